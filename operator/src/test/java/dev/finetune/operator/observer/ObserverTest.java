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

  /** While the trainer downloads, kubectl describe shows the download: reason Downloading, the trainer's words. */
  @Test
  void aDownloadShowsAsReasonDownloadingUntilTrainingStarts() {
    FineTuneJob ftj = Jobs.small("dl", "ns");
    Job job = trainingJob(ftj);
    Pod pod = Jobs.podFor(job, "a");
    Jobs.running(pod, "10.0.0.7");
    FineTuneJobStatus st = new FineTuneJobStatus();
    String download = "downloading model.safetensors of org/name: 1.2 of 5.0 GB, 45 MB/s, about 2 min left";
    JobObserver.observe(ftj, st, snapshot(job, pod, Jobs.downloading(download, 3)));
    assertThat(st.phase).isEqualTo(Phase.Running);
    assertThat(st.reason).isEqualTo("Downloading");
    assertThat(st.message).isEqualTo(download);
    assertThat(Conditions.find(st, Conditions.RUNNING).orElseThrow()).satisfies(c -> {
      assertThat(c.getStatus()).isEqualTo("True");
      assertThat(c.getReason()).isEqualTo("Downloading");
      assertThat(c.getMessage()).isEqualTo(download);
    });
    assertThat(st.epoch).isNull();
    assertThat(TrainerStatus.progress(st)).isEqualTo("0/3");

    // the next file, then training: back to Training, the same Running condition
    String transition = Conditions.find(st, Conditions.RUNNING).orElseThrow().getLastTransitionTime();
    JobObserver.observe(ftj, st, snapshot(job, pod, Jobs.downloading("", 3)));
    assertThat(st.reason).isEqualTo("Downloading");
    assertThat(st.message).as("a report without words still says what happens").isNotBlank();
    JobObserver.observe(ftj, st, snapshot(job, pod, Jobs.progress(1, 3)));
    assertThat(st.reason).isEqualTo("Training");
    assertThat(st.message).isEqualTo("trainer Pod dl-train-a is running");
    assertThat(st.epoch).isEqualTo(1);
    assertThat(Conditions.find(st, Conditions.RUNNING).orElseThrow()).satisfies(c -> {
      assertThat(c.getReason()).isEqualTo("Training");
      assertThat(c.getLastTransitionTime()).isEqualTo(transition);
    });

    // the poller's projection changes with each step of a download, so each one is shown
    FineTuneJobStatus a = new FineTuneJobStatus();
    FineTuneJobStatus b = new FineTuneJobStatus();
    TrainerStatus.apply(a, Jobs.downloading("downloading model.safetensors of org/name: 1.2 of 5.0 GB", 3));
    TrainerStatus.apply(b, Jobs.downloading("downloading model.safetensors of org/name: 1.3 of 5.0 GB", 3));
    assertThat(FineTuneJobs.toJson(a)).isNotEqualTo(FineTuneJobs.toJson(b));
  }

  /** A trainer Pod the kubelet cannot start for a missing Secret or key sits Pending: the status says which and how to fix it. */
  @Test
  void aMissingTokenSecretOrKeyIsNamedWhileThePodWaits() {
    FineTuneJob ftj = Jobs.small("gated", "ml");
    ftj.getSpec().model.scratch = null;
    ftj.getSpec().model.hub = "meta-llama/Llama-3.2-1B";
    ftj.getSpec().model.hubTokenSecret = new dev.finetune.api.ModelSpec.HubTokenSecret();
    ftj.getSpec().model.hubTokenSecret.name = "hf-token";
    Job job = trainingJob(ftj);
    Pod pod = Jobs.podFor(job, "a");
    Jobs.waiting(pod, "CreateContainerConfigError", "secret \"hf-token\" not found");
    FineTuneJobStatus st = new FineTuneJobStatus();
    JobObserver.observe(ftj, st, snapshot(job, pod, null));
    assertThat(st.phase).isEqualTo(Phase.Pending);
    assertThat(st.reason).isEqualTo("CreateContainerConfigError");
    assertThat(st.message).isEqualTo("trainer Pod gated-train-a is not running yet (CreateContainerConfigError): secret"
        + " \"hf-token\" not found; spec.model.hubTokenSecret names Secret hf-token with key token in namespace ml:"
        + " create it (kubectl create secret generic hf-token -n ml --from-literal=token=hf_...) or fix the spec");
    assertThat(Conditions.find(st, Conditions.RUNNING).orElseThrow().getReason()).isEqualTo("CreateContainerConfigError");

    Jobs.waiting(pod, "CreateContainerConfigError", "couldn't find key token in Secret ml/hf-token");
    JobObserver.observe(ftj, st, snapshot(job, pod, null));
    assertThat(st.message).contains("couldn't find key token in Secret ml/hf-token; spec.model.hubTokenSecret names"
        + " Secret hf-token with key token");

    // another Secret (the judge's): named as such; a Secret the spec does not name: the kubelet's words alone
    ftj.getSpec().evaluation.judge = new dev.finetune.api.EvaluationSpec.JudgeSpec();
    ftj.getSpec().evaluation.judge.apiKeySecret = new dev.finetune.api.EvaluationSpec.SecretKeyRef();
    ftj.getSpec().evaluation.judge.apiKeySecret.name = "judge";
    ftj.getSpec().evaluation.judge.apiKeySecret.key = "api-key";
    Jobs.waiting(pod, "CreateContainerConfigError", "secret \"judge\" not found");
    JobObserver.observe(ftj, st, snapshot(job, pod, null));
    assertThat(st.message).endsWith("secret \"judge\" not found; spec.evaluation.judge.apiKeySecret names Secret judge"
        + " with key api-key in namespace ml: create it or fix the spec");
    Jobs.waiting(pod, "CreateContainerConfigError", "secret \"hf-token-old\" not found");
    JobObserver.observe(ftj, st, snapshot(job, pod, null));
    assertThat(st.message).endsWith("(CreateContainerConfigError): secret \"hf-token-old\" not found");

    // a Pod the scheduler cannot place (e.g. the cache claim is missing in this namespace): its words too
    pod.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Pending")
        .addNewCondition().withType("PodScheduled").withStatus("False").withReason("Unschedulable")
        .withMessage("0/3 nodes are available: persistentvolumeclaim \"hub-cache\" not found.").endCondition().build());
    JobObserver.observe(ftj, st, snapshot(job, pod, null));
    assertThat(st.reason).isEqualTo("Unschedulable");
    assertThat(st.message).isEqualTo("trainer Pod gated-train-a is not running yet (Unschedulable): 0/3 nodes are"
        + " available: persistentvolumeclaim \"hub-cache\" not found.");
  }

  /** The training Job the operator makes, as the API server returns it (with a uid). */
  private static Job trainingJob(FineTuneJob ftj) {
    Job job = new dev.finetune.operator.resources.TrainerResources(
        dev.finetune.operator.config.OperatorConfig.defaults()).job(ftj);
    job.getMetadata().setUid("uid-" + ftj.getMetadata().getName());
    return job;
  }

  private static Snapshot snapshot(Job job, Pod pod, TrainerReport progress) {
    return new Snapshot(java.util.Optional.of(job), List.of(pod), java.util.Optional.ofNullable(progress),
        java.util.Optional.empty(), List.of(), java.util.Optional.empty());
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
