package dev.finetune.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.ResourcesSpec;
import dev.finetune.api.testing.JobSetCrd;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.RealKubeApiServer.Result;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.testing.FakeJobSetController;
import dev.finetune.operator.testing.FakeTrainer;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.awaitility.core.ConditionTimeoutException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A job with several nodes on a cluster that has JobSet: the real kube-apiserver v1.34 with the controller manager and
 * JobSet's own CRD (v0.9.1, {@link JobSetCrd}), the operator finding it at its start (FINETUNE_JOBSET auto), a {@link
 * FakeJobSetController} playing JobSet's controller and the test playing the kubelet. The JobSet is one object, so
 * Kueue admits and suspends it as one workload, and a failed node restarts every node.
 */
class JobSetOperatorTest {
  private static final String NS = "jobsets";
  private static RealKubeApiServer kube;
  private static KubernetesClient client;
  private static FakeTrainer trainer;
  private static FakeJobSetController jobSetController;
  private static FineTuneOperator operator;
  private static OperatorConfig config;

  @BeforeAll
  static void start() throws Exception {
    kube = RealKubeApiServer.start(true);
    client = kube.client();
    kube.installCrd();
    JobSetCrd.install(kube);
    client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(NS).endMetadata().build()).create();
    await().atMost(Duration.ofSeconds(60)).until(
        () -> client.serviceAccounts().inNamespace(NS).withName("default").get() != null);
    jobSetController = new FakeJobSetController(client, NS);
    trainer = new FakeTrainer();
    config = OperatorConfig.fromEnv(Map.of(
        "FINETUNE_TRAINER_PORT", String.valueOf(trainer.port()),
        "FINETUNE_PROGRESS_INTERVAL_SECONDS", "1",
        "FINETUNE_LEADER_ELECTION", "false",
        "POD_NAME", "operator-test"));
    // the API is served a moment after the CRD is established
    await().atMost(Duration.ofSeconds(30)).until(() -> FineTuneOperator.servesJobSets(client));
    operator = FineTuneOperator.create(client, config, new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)).start();
    await().atMost(Duration.ofSeconds(60)).until(operator::isReady);
  }

  @AfterAll
  static void stop() {
    for (AutoCloseable c : new AutoCloseable[] {operator, jobSetController, trainer, kube}) {
      try {
        if (c != null) {
          c.close();
        }
      } catch (Exception e) {
        // the next one still closes
      }
    }
  }

  @Test
  void twoNodesRunAsOneJobSetThatKueueQueuesAndThatRestartsTogether() throws Exception {
    FineTuneJob pair = twoNodes("pair");
    pair.getSpec().labels = Map.of("kueue.x-k8s.io/queue-name", "team-a");
    client.resource(pair).create();

    // one JobSet, accepted by JobSet's schema; no Jobs of the operator's own
    JobSet set = await().atMost(Duration.ofSeconds(30)).until(
        () -> client.resources(JobSet.class).inNamespace(NS).withName("pair-train").get(), s -> s != null);
    assertThat(set.getMetadata().getLabels()).containsEntry("kueue.x-k8s.io/queue-name", "team-a");
    assertThat(set.getMetadata().getOwnerReferences()).singleElement()
        .satisfies(o -> assertThat(o.getKind()).isEqualTo("FineTuneJob"));
    assertThat(set.getSpec().replicatedJobs).extracting(r -> r.name).containsExactly(Names.LEADER, Names.WORKERS);
    assertThat(set.getSpec().replicatedJobs).allSatisfy(r -> {
      assertThat(r.replicas).isEqualTo(1);
      assertThat(r.template.getMetadata().getLabels()).as("Kueue admits the JobSet, not its Jobs")
          .doesNotContainKey("kueue.x-k8s.io/queue-name").containsEntry(Names.JOB_LABEL, "pair");
      assertThat(r.template.getSpec().getBackoffLimit()).as("a lone rank cannot go on").isZero();
    });
    assertThat(set.getSpec().replicatedJobs.get(1).template.getSpec().getCompletions()).isEqualTo(1);
    assertThat(set.getSpec().failurePolicy.maxRestarts).as("spec.backoffLimit").isEqualTo(2);
    assertThat(client.services().inNamespace(NS).withName("rdzv-pair").get()).isNotNull();

    // the JobSet controller makes the two Jobs, the Job controller their Pods
    List<Pod> first = awaitPods("pair", 2);
    Pod leader = role(first, Names.LEADER);
    Pod worker = role(first, Names.WORKER);
    assertThat(client.batch().v1().jobs().inNamespace(NS).withLabel(Names.JOB_LABEL, "pair").list().getItems())
        .extracting(j -> j.getMetadata().getName()).containsExactlyInAnyOrder("pair-train-leader-0", "pair-train-workers-0");
    awaitFtj("pair", j -> j.getStatus().phase == Phase.Pending && "pair-train".equals(j.getStatus().jobName));

    trainer.set(Jobs.progress(1, 3));
    writeStatus(leader, p -> Jobs.running(p, "127.0.0.1"));
    writeStatus(worker, p -> Jobs.running(p, "127.0.0.1"));
    awaitFtj("pair", j -> j.getStatus().phase == Phase.Running && "2/2".equals(j.getStatus().ranks)
        && Integer.valueOf(1).equals(j.getStatus().epoch));

    // the worker dies: its Job fails at once, and the JobSet makes both Jobs anew
    writeStatus(worker, p -> Jobs.terminated(p, TrainerContract.ExitCodes.CRASHED, "killed"));
    FineTuneJob restarted = awaitFtj("pair", j -> Integer.valueOf(1).equals(j.getStatus().restarts)
        && j.getStatus().failedRanks != null);
    assertThat(restarted.getStatus().failedRanks).singleElement().asString().startsWith("Rank 1 on node 1");
    assertThat(restarted.getStatus().phase).as("a restart is not the end").isIn(Phase.Pending, Phase.Running);
    List<Pod> second = await().atMost(Duration.ofSeconds(90)).until(() -> pods("pair"),
        l -> l.size() == 2 && l.stream().noneMatch(p -> first.stream()
            .anyMatch(f -> f.getMetadata().getName().equals(p.getMetadata().getName()))));

    // both nodes finish; rank 0 leaves the summary
    writeStatus(role(second, Names.LEADER), p -> Jobs.running(p, "127.0.0.1"));
    writeStatus(role(second, Names.WORKER), p -> Jobs.running(p, "127.0.0.1"));
    writeStatus(role(second, Names.WORKER), p -> Jobs.terminated(p, 0, ""));
    writeStatus(role(second, Names.LEADER),
        p -> Jobs.terminated(p, 0, FineTuneJobs.toJson(Jobs.summary("Succeeded", "Completed", 3, 3))));
    FineTuneJob done = awaitFtj("pair", j -> j.getStatus().phase == Phase.Succeeded);
    assertThat(done.getStatus().restarts).isEqualTo(1);
    assertThat(done.getStatus().epoch).isEqualTo(3);
    assertThat(done.getStatus().completionTime).isNotNull();
    Result describe = kube.kubectl("describe", "ftj", "pair", "-n", NS);
    assertThat(describe.output()).as(describe.output())
        .contains("Created JobSet pair-train", "RankFailed", "Restarted", "Succeeded");
  }

  @Test
  void badInputOnAnyNodeFailsTheJobSetWithoutARestart() throws Exception {
    FineTuneJob bad = twoNodes("bad");
    bad.getSpec().ttlSecondsAfterFinished = 3600;
    client.resource(bad).create();
    List<Pod> pods = awaitPods("bad", 2);
    writeStatus(role(pods, Names.LEADER), p -> Jobs.running(p, "127.0.0.1"));
    writeStatus(role(pods, Names.WORKER), p -> Jobs.terminated(p, TrainerContract.ExitCodes.BAD_JOB,
        "record 7 of train.jsonl: no output field"));
    FineTuneJob failed = awaitFtj("bad", j -> j.getStatus().phase == Phase.Failed);
    assertThat(failed.getStatus().restarts).isZero();
    assertThat(failed.getStatus().message).contains("record 7 of train.jsonl: no output field");
    JobSet set = client.resources(JobSet.class).inNamespace(NS).withName("bad-train").get();
    assertThat(set.getStatus().restarts).isZero();
    assertThat(set.condition("Failed")).get().extracting(c -> c.getReason())
        .isEqualTo("FailJobSetFailurePolicyAction");
    // once its end is recorded, the finished JobSet goes to its TTL, as a finished Job does
    await().atMost(Duration.ofSeconds(30)).until(() -> client.resources(JobSet.class).inNamespace(NS)
        .withName("bad-train").get().getSpec().ttlSecondsAfterFinished, ttl -> Integer.valueOf(3600).equals(ttl));
  }

  @Test
  void suspendGoesToTheJobSetAndAQueueThatSuspendsItHoldsTheWholeJob() throws Exception {
    FineTuneJob held = twoNodes("held");
    held.getSpec().suspend = true;
    client.resource(held).create();
    awaitFtj("held", j -> j.getStatus().phase == Phase.Suspended);
    assertThat(client.resources(JobSet.class).inNamespace(NS).withName("held-train").get().getSpec().suspend).isTrue();
    await().atMost(Duration.ofSeconds(30)).until(() -> client.batch().v1().jobs().inNamespace(NS).list().getItems()
        .stream().filter(j -> j.getMetadata().getName().startsWith("held-train-")).count() == 2);
    assertThat(pods("held")).as("no Pod of a suspended JobSet").isEmpty();

    client.resources(FineTuneJob.class).inNamespace(NS).withName("held")
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":false}}");
    awaitPods("held", 2);
    awaitFtj("held", j -> j.getStatus().phase == Phase.Pending);
    assertThat(client.resources(JobSet.class).inNamespace(NS).withName("held-train").get().getSpec().suspend).isFalse();

    // a queue (Kueue) preempts the workload: it suspends the JobSet, and with it every node
    client.resources(JobSet.class).inNamespace(NS).withName("held-train")
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":true}}");
    FineTuneJob queued = awaitFtj("held", j -> "Queued".equals(j.getStatus().reason));
    assertThat(queued.getStatus().phase).isEqualTo(Phase.Pending);
    await().atMost(Duration.ofSeconds(60)).until(() -> pods("held").isEmpty());
    assertThat(client.resources(JobSet.class).inNamespace(NS).withName("held-train").get().getSpec().suspend)
        .as("the operator leaves a queue's suspension alone").isTrue();
  }

  /** Told not to use JobSets any more (FINETUNE_JOBSET false), an operator still follows the ones it made. */
  @Test
  void anOperatorToldNotToUseJobSetsFollowsTheOnesItMade() throws Exception {
    client.resource(twoNodes("kept")).create();
    List<Pod> pods = awaitPods("kept", 2);
    operator.close();
    operator = FineTuneOperator.create(client, config.withJobSet(OperatorConfig.JobSetUse.NEVER),
        new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)).start();
    try {
      await().atMost(Duration.ofSeconds(60)).until(operator::isReady);
      writeStatus(role(pods, Names.LEADER), p -> Jobs.running(p, "127.0.0.1"));
      writeStatus(role(pods, Names.WORKER), p -> Jobs.running(p, "127.0.0.1"));
      awaitFtj("kept", j -> j.getStatus().phase == Phase.Running && "2/2".equals(j.getStatus().ranks));
      client.resources(FineTuneJob.class).inNamespace(NS).withName("kept")
          .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":true}}");
      awaitFtj("kept", j -> j.getStatus().phase == Phase.Suspended);
      assertThat(client.resources(JobSet.class).inNamespace(NS).withName("kept-train").get().getSpec().suspend).isTrue();
    } finally {
      operator.close();
      operator = FineTuneOperator.create(client, config, new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)).start();
      await().atMost(Duration.ofSeconds(60)).until(operator::isReady);
    }
  }

  private static FineTuneJob twoNodes(String name) {
    FineTuneJob ftj = TinyJob.job(name, NS, 3);
    ftj.getSpec().resources = new ResourcesSpec();
    ftj.getSpec().resources.nodes = 2;
    ftj.getSpec().backoffLimit = 2;
    return ftj;
  }

  private static Pod role(List<Pod> pods, String role) {
    return pods.stream().filter(p -> role.equals(p.getMetadata().getLabels().get(Names.ROLE_LABEL))).findFirst()
        .orElseThrow(() -> new AssertionError("no " + role + " Pod among " + pods.size()));
  }

  private static List<Pod> pods(String job) {
    return client.pods().inNamespace(NS).withLabel(Names.JOB_LABEL, job).list().getItems().stream()
        .filter(p -> p.getMetadata().getDeletionTimestamp() == null)
        .sorted(Comparator.comparing(p -> p.getMetadata().getCreationTimestamp())).toList();
  }

  private static List<Pod> awaitPods(String job, int n) {
    return await().atMost(Duration.ofSeconds(60)).until(() -> pods(job), l -> l.size() >= n);
  }

  private static void writeStatus(Pod pod, java.util.function.Consumer<Pod> kubelet) {
    await().atMost(Duration.ofSeconds(10)).ignoreExceptions().untilAsserted(() -> {
      Pod live = client.pods().inNamespace(NS).withName(pod.getMetadata().getName()).get();
      kubelet.accept(live);
      client.pods().inNamespace(NS).resource(live).updateStatus();
    });
  }

  /** The FineTuneJob once its status satisfies the predicate; else a failure that shows the last status. */
  private static FineTuneJob awaitFtj(String name, Predicate<FineTuneJob> until) {
    try {
      return await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(200)).until(
          () -> client.resources(FineTuneJob.class).inNamespace(NS).withName(name).get(),
          j -> j != null && j.getStatus() != null && until.test(j));
    } catch (ConditionTimeoutException e) {
      FineTuneJob last = client.resources(FineTuneJob.class).inNamespace(NS).withName(name).get();
      throw new AssertionError("status of " + name + " never matched; the last: "
          + (last == null ? null : FineTuneJobs.toJson(last.getStatus())), e);
    }
  }
}
