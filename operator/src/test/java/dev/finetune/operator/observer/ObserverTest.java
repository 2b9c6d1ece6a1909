package dev.finetune.operator.observer;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ObserverTest {

  @Test
  void historyIsMergedByEpochAndBounded() {
    FineTuneJobStatus st = new FineTuneJobStatus();
    TrainerReport p = new TrainerReport();
    p.epochs = 500;
    p.history = new ArrayList<>();
    for (int e = 1; e <= 150; e++) {
      p.history.add(new EpochRecord(e, 1.0 / e, 2.0 / e));
    }
    TrainerStatus.apply(st, p);
    assertThat(st.history).hasSize(FineTuneJobStatus.MAX_HISTORY);
    assertThat(st.history.get(0).epoch).isEqualTo(51);
    assertThat(st.validationLoss).isEqualTo(2.0 / 150);
    assertThat(st.epoch).isEqualTo(150);
    assertThat(TrainerStatus.progress(st)).isEqualTo("150/500");

    // a later report with only the newest epochs (and a corrected one) merges, newest wins
    TrainerReport later = new TrainerReport();
    later.history = List.of(new EpochRecord(150, 9.0, 9.0), new EpochRecord(151, 0.5, 0.6));
    later.trainLoss = 0.5;
    TrainerStatus.apply(st, later);
    assertThat(st.history).hasSize(FineTuneJobStatus.MAX_HISTORY);
    assertThat(st.history.get(st.history.size() - 2).trainLoss).isEqualTo(9.0);
    assertThat(st.epoch).isEqualTo(151);
    assertThat(st.trainLoss).isEqualTo(0.5);
    assertThat(st.validationLoss).as("from the last epoch record when not reported on its own").isEqualTo(0.6);
  }

  @Test
  void progressBeforeTheFirstEpochLeavesEpochUnset() {
    FineTuneJobStatus st = new FineTuneJobStatus();
    TrainerReport p = new TrainerReport();
    p.phase = "Training";
    p.epoch = 1;
    p.epochs = 3;
    TrainerStatus.apply(st, p);
    assertThat(st.epoch).isNull();
    assertThat(TrainerStatus.progress(st)).isEqualTo("0/3");
  }

  @Test
  void terminationMessageIsASummaryOrPlainLogText() {
    Pod pod = new PodBuilder().withNewMetadata().withName("p").withCreationTimestamp("2026-01-01T00:00:00Z")
        .endMetadata().build();
    Jobs.terminated(pod, 0, FineTuneJobs.toJson(Jobs.summary("Succeeded", "Completed", 2, 2)));
    var t = TerminationMessages.of(pod).orElseThrow();
    assertThat(t.exitCode()).isZero();
    assertThat(t.summary().reason).isEqualTo("Completed");
    assertThat(t.summary().history).hasSize(2);

    Pod crashed = new PodBuilder().withNewMetadata().withName("q").endMetadata().build();
    Jobs.terminated(crashed, 137, "Exception in thread \"main\" java.lang.OutOfMemoryError\n\tat x");
    var c = TerminationMessages.of(crashed).orElseThrow();
    assertThat(c.summary()).isNull();
    assertThat(c.message()).contains("OutOfMemoryError");
    assertThat(c.exitCode()).isEqualTo(137);

    Pod cut = new PodBuilder().withNewMetadata().withName("r").endMetadata().build();
    Jobs.terminated(cut, 1, "{\"phase\":\"Failed\",\"reason\":\"Err"); // truncated JSON
    assertThat(TerminationMessages.of(cut).orElseThrow().summary()).isNull();

    Pod running = new PodBuilder().withNewMetadata().withName("s").endMetadata().build();
    Jobs.running(running, "10.0.0.1");
    assertThat(TerminationMessages.of(running)).isEmpty();
    assertThat(TerminationMessages.latest(List.of(running, crashed)).orElseThrow().podName()).isEqualTo("q");
  }

  @Test
  void aSuspendedJobIsSuspendedOnlyWhenTheUserOrTheOperatorAskedForIt() {
    FineTuneJob ftj = Jobs.small("held", "ns");
    FineTuneJobStatus st = new FineTuneJobStatus();
    JobObserver.observe(ftj, st, Snapshot.of(suspendedJob("false")));
    assertThat(st.phase).as("suspended by a queue such as Kueue").isEqualTo(Phase.Pending);
    assertThat(st.reason).isEqualTo("Queued");

    st = new FineTuneJobStatus();
    JobObserver.observe(ftj, st, Snapshot.of(suspendedJob("true")));
    assertThat(st.phase).as("resumed by the user, not yet on the Job").isEqualTo(Phase.Suspended);

    ftj.getSpec().suspend = true;
    st = new FineTuneJobStatus();
    JobObserver.observe(ftj, st, Snapshot.of(suspendedJob("false")));
    assertThat(st.phase).isEqualTo(Phase.Suspended);
    assertThat(st.jobName).isEqualTo("held-train");
    assertThat(Conditions.isTrue(st, Conditions.SUSPENDED)).isTrue();
  }

  /** kubectl get ftj -o wide: what trains, in what precision on what device, and where the results are. */
  @Test
  void theWideColumnsSayTheModelThePrecisionTheDeviceAndWhereTheResultsAre() {
    FineTuneJob ftj = Jobs.small("wide", "ns");
    ftj.getSpec().model.scratch = null;
    ftj.getSpec().model.hub = "meta-llama/Llama-3.2-1B";
    ftj.getSpec().model.revision = "v2";
    ftj.getSpec().checkpoints.path = "runs/wide";
    FineTuneJobStatus st = new FineTuneJobStatus();
    JobObserver.observe(ftj, st, Snapshot.of(suspendedJob("false")));
    assertThat(st.model).isEqualTo("meta-llama/Llama-3.2-1B@v2");
    assertThat(st.results).isEqualTo("pvc/wide-checkpoints:runs/wide");
    TrainerReport r = new TrainerReport();
    r.precision = "bf16";
    r.device = "cuda:0 NVIDIA H100 80GB HBM3 (compute capability 9.0)";
    TrainerStatus.apply(st, r);
    assertThat(st.precision).isEqualTo("bf16");
    assertThat(st.device).isEqualTo("cuda:0 NVIDIA H100 80GB HBM3 (compute capability 9.0)");
    TrainerStatus.apply(st, new TrainerReport());
    assertThat(st.precision).as("kept when a report leaves it out").isEqualTo("bf16");

    ftj.getSpec().checkpoints.claimName = "team-results";
    ftj.getSpec().model.hub = null;
    ftj.getSpec().model.path = "models/llama";
    JobObserver.observe(ftj, st, Snapshot.of(suspendedJob("false")));
    assertThat(st.model).isEqualTo("models/llama");
    assertThat(st.results).isEqualTo("pvc/team-results:runs/wide");
  }

  /** A suspended Job on which the operator last applied this spec.suspend. */
  private static Job suspendedJob(String applied) {
    return new JobBuilder().withNewMetadata().withName("held-train").withUid("u1")
        .addToAnnotations(Names.SUSPEND_ANNOTATION, applied).endMetadata()
        .withNewSpec().withSuspend(true).endSpec().build();
  }

  @Test
  void progressUriHandlesIpv6() {
    assertThat(ProgressClient.progressUri("10.1.2.3", 9090).toString()).isEqualTo("http://10.1.2.3:9090/progress");
    assertThat(ProgressClient.progressUri("fd00::1", 9090).toString()).isEqualTo("http://[fd00::1]:9090/progress");
  }
}
