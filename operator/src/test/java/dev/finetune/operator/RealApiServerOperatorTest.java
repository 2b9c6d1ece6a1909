package dev.finetune.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.RealKubeApiServer.Result;
import dev.finetune.api.testing.TinyJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.trainer.TrainerReport;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.testing.FakeTrainer;
import dev.finetune.operator.testing.Jobs;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * End to end on a real kube-apiserver v1.34 with kube-controller-manager (Job controller, garbage collector):
 * the CRD from crds/, a job applied with kubectl, the Job controller making the trainer Pods, and the test
 * playing the kubelet (Pod status: running with a fake /progress, a crash the Job retries, then success with a
 * termination message). Server-side apply and leader election (a Lease) are on, as in production.
 * Skipped with a message when etcd or the Kubernetes binaries are missing.
 */
class RealApiServerOperatorTest {
  private static final String NS = "training";
  private static RealKubeApiServer kube;
  private static KubernetesClient client;
  private static FakeTrainer trainer;
  private static FineTuneOperator operator;

  @BeforeAll
  static void start() throws Exception {
    kube = RealKubeApiServer.start(true);
    client = kube.client();
    kube.installCrd();
    client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(NS).endMetadata().build()).create();
    // the Pod admission needs the namespace's default ServiceAccount, made by the controller manager
    await().atMost(Duration.ofSeconds(60)).until(
        () -> client.serviceAccounts().inNamespace(NS).withName("default").get() != null);

    trainer = new FakeTrainer();
    OperatorConfig config = OperatorConfig.fromEnv(Map.of(
        "FINETUNE_TRAINER_PORT", String.valueOf(trainer.port()),
        "FINETUNE_PROGRESS_INTERVAL_SECONDS", "1",
        "FINETUNE_LEADER_ELECTION_NAMESPACE", "default",
        "POD_NAME", "operator-test"));
    operator = FineTuneOperator.create(client, config, new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)).start();
    await().atMost(Duration.ofSeconds(60)).until(operator::isReady);
  }

  @AfterAll
  static void stop() {
    if (operator != null) {
      operator.close();
    }
    if (trainer != null) {
      trainer.close();
    }
    if (kube != null) {
      kube.close();
    }
  }

  @Test
  void applyTrainCrashRetrySucceedAndDelete() throws Exception {
    Path file = Files.createTempFile("e2e", ".yaml");
    Files.writeString(file, TinyJob.yaml("e2e", "training", 3)
        + "  labels:\n    kueue.x-k8s.io/queue-name: team-a\n");
    Result applied = kube.kubectl("apply", "-f", file.toString());
    assertThat(applied.exitCode()).as(applied.output()).isZero();

    Job job = await().atMost(Duration.ofSeconds(30)).until(
        () -> client.batch().v1().jobs().inNamespace(NS).withName("e2e-train").get(), j -> j != null);
    assertThat(job.getMetadata().getLabels()).containsEntry("kueue.x-k8s.io/queue-name", "team-a");
    assertThat(job.getMetadata().getOwnerReferences()).singleElement()
        .satisfies(o -> assertThat(o.getKind()).isEqualTo("FineTuneJob"));
    assertThat(client.configMaps().inNamespace(NS).withName("e2e-spec").get()).isNotNull();
    assertThat(client.persistentVolumeClaims().inNamespace(NS).withName("e2e-checkpoints").get()).isNotNull();
    // the Job controller makes the Pod from the template
    Pod first = awaitPods(1).get(0);
    assertThat(first.getSpec().getContainers().get(0).getCommand()).contains(TrainerContract.TRAINER_JAR);
    awaitFtj(j -> j.getStatus().phase == Phase.Pending && "e2e-train".equals(j.getStatus().jobName));

    // kubelet: the trainer runs and reports its first epoch on /progress
    trainer.set(Jobs.progress(1, 3));
    writeStatus(first, p -> Jobs.running(p, "127.0.0.1"));
    FineTuneJob running = awaitFtj(j -> j.getStatus().phase == Phase.Running && Integer.valueOf(1).equals(j.getStatus().epoch));
    assertThat(running.getStatus().trainLoss).isEqualTo(3.0);
    Result table = kube.kubectl("get", "ftj", "e2e", "-n", NS);
    assertThat(table.output()).as(table.output()).contains("PHASE", "EPOCH", "TRAIN-LOSS", "VAL-LOSS", "BEST");
    assertThat(table.output().lines().skip(1).findFirst().orElseThrow().split("\\s+"))
        .as(table.output()).startsWith("e2e", "Running", "1/3", "3", "3.5", "3.5");

    // the trainer crashes; the Job controller retries with a new Pod (after its back-off)
    writeStatus(first, p -> Jobs.terminated(p, TrainerContract.ExitCodes.CRASHED, "killed: out of memory"));
    List<Pod> pods = await().atMost(Duration.ofSeconds(90)).until(() -> pods(), l -> l.size() == 2);
    Pod second = pods.stream().filter(p -> !p.getMetadata().getName().equals(first.getMetadata().getName()))
        .findFirst().orElseThrow();
    FineTuneJob restarted = awaitFtj(j -> Integer.valueOf(1).equals(j.getStatus().restarts));
    assertThat(restarted.getStatus().phase).isIn(Phase.Pending, Phase.Running);

    trainer.set(Jobs.progress(2, 3));
    writeStatus(second, p -> Jobs.running(p, "127.0.0.1"));
    awaitFtj(j -> j.getStatus().phase == Phase.Running && Integer.valueOf(2).equals(j.getStatus().epoch));

    // the last epoch ends between two polls: the termination message carries it
    TrainerReport summary = Jobs.summary("Succeeded", "Completed", 3, 3);
    writeStatus(second, p -> Jobs.terminated(p, 0, FineTuneJobs.toJson(summary)));
    FineTuneJob done = awaitFtj(j -> j.getStatus().phase == Phase.Succeeded);
    assertThat(done.getStatus().epoch).isEqualTo(3);
    assertThat(done.getStatus().history).extracting(r -> r.epoch).containsExactly(1, 2, 3);
    assertThat(done.getStatus().bestEpoch).isEqualTo(3);
    assertThat(done.getStatus().restarts).isEqualTo(1);
    assertThat(done.getStatus().completionTime).isNotNull();
    assertThat(done.getStatus().observedGeneration).isEqualTo(done.getMetadata().getGeneration());
    table = kube.kubectl("get", "ftj", "e2e", "-n", NS);
    assertThat(table.output().lines().skip(1).findFirst().orElseThrow().split("\\s+"))
        .as(table.output()).startsWith("e2e", "Succeeded", "3/3", "1", String.valueOf(3.5 / 3), String.valueOf(3.5 / 3));
    Result describe = kube.kubectl("describe", "ftj", "e2e", "-n", NS);
    assertThat(describe.output()).as(describe.output())
        .contains("Created", "Started", "EpochFinished", "Restarted", "Succeeded");

    // deleting the FineTuneJob removes what it owns (the garbage collector follows the owner references), but not
    // the claim with the results (spec.checkpoints.retainClaim, true by default: it has no owner)
    Result deleted = kube.kubectl("delete", "ftj", "e2e", "-n", NS, "--wait=true");
    assertThat(deleted.exitCode()).as(deleted.output()).isZero();
    await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
      assertThat(client.batch().v1().jobs().inNamespace(NS).withName("e2e-train").get()).isNull();
      assertThat(client.configMaps().inNamespace(NS).withName("e2e-spec").get()).isNull();
    });
    PersistentVolumeClaim kept = client.persistentVolumeClaims().inNamespace(NS).withName("e2e-checkpoints").get();
    assertThat(kept).as("the results' claim outlives the job").isNotNull();
    assertThat(kept.getMetadata().getDeletionTimestamp()).isNull();
    assertThat(kept.getMetadata().getOwnerReferences()).isEmpty();
    Result gone = kube.kubectl("delete", "pvc", "e2e-checkpoints", "-n", NS, "--wait=false");
    assertThat(gone.exitCode()).as(gone.output()).isZero();
  }

  @Test
  void invalidSpecIsRefusedByTheServerOrFailedWithoutAJob() throws Exception {
    // Fractions must sum to 1: a CEL rule of the CRD refuses it, in the validator's words.
    FineTuneJob badSplit = Jobs.small("bad-split", NS);
    badSplit.getSpec().dataset.split.train = 0.5;
    assertThatThrownBy(() -> client.resource(badSplit).create()).isInstanceOfSatisfying(KubernetesClientException.class, e -> {
      assertThat(e.getCode()).isEqualTo(422);
      assertThat(e.getMessage()).contains("spec.dataset.split", "fractions sum to 0.65, must be 1.0 (train + validation + test)");
    });

    // What no CRD rule checks (a label value) the operator's validator does: Failed/InvalidSpec, no Job.
    FineTuneJob broken = Jobs.small("bad-label", NS);
    broken.getSpec().labels = Map.of("team", "not a label value!");
    client.resource(broken).create();
    FineTuneJob failed = await().atMost(Duration.ofSeconds(30)).until(
        () -> client.resources(FineTuneJob.class).inNamespace(NS).withName("bad-label").get(),
        j -> j.getStatus() != null && j.getStatus().phase == Phase.Failed);
    assertThat(failed.getStatus().reason).isEqualTo("InvalidSpec");
    assertThat(failed.getStatus().message).contains("spec.labels.team: 'not a label value!' is not a valid label value");
    assertThat(client.batch().v1().jobs().inNamespace(NS).withName("bad-label-train").get()).isNull();
    Result table = kube.kubectl("get", "ftj", "bad-label", "-n", NS);
    assertThat(table.output()).contains("Failed");
  }

  @Test
  void aJobTheApiServerRejectsFailsTheFineTuneJob() {
    FineTuneJob job = Jobs.small("rejected", NS);
    job.getSpec().nodeSelector = java.util.Map.of("not a valid key!", "x"); // only the API server checks this
    client.resource(job).create();
    FineTuneJob failed = await().atMost(Duration.ofSeconds(30)).until(
        () -> client.resources(FineTuneJob.class).inNamespace(NS).withName("rejected").get(),
        j -> j.getStatus() != null && j.getStatus().phase == Phase.Failed);
    assertThat(failed.getStatus().reason).isEqualTo("Rejected");
    assertThat(failed.getStatus().message).contains("nodeSelector").contains("422");
    assertThat(client.batch().v1().jobs().inNamespace(NS).withName("rejected-train").get()).isNull();

    // fixed: the job starts, and the trainer's file follows the fixed spec
    client.resources(FineTuneJob.class).inNamespace(NS).withName("rejected").edit(j -> {
      j.getSpec().nodeSelector = java.util.Map.of("pool", "cpu");
      return j;
    });
    await().atMost(Duration.ofSeconds(30)).until(
        () -> client.batch().v1().jobs().inNamespace(NS).withName("rejected-train").get() != null);
    assertThat(client.configMaps().inNamespace(NS).withName("rejected-spec").get().getData()
        .get(TrainerContract.SPEC_KEY)).contains("pool: cpu").doesNotContain("not a valid key");
    await().atMost(Duration.ofSeconds(30)).until(
        () -> client.resources(FineTuneJob.class).inNamespace(NS).withName("rejected").get().getStatus().phase
            == Phase.Pending);
  }

  /**
   * The real process: OperatorMain with only environment variables, JSON logs, its own Lease and namespace,
   * /readyz, /metrics and /healthz, a job reconciled, and a clean exit on SIGTERM.
   */
  @Test
  void operatorMainServesProbesAndMetricsAndStopsOnSigterm() throws Exception {
    String ns = "main-process";
    client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build()).create();
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Path log = Files.createTempFile("operator", ".log");
    ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), OperatorMain.class.getName())
        .redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("KUBECONFIG", kube.kubeconfig().toString());
    pb.environment().put("FINETUNE_WATCH_NAMESPACES", ns);
    pb.environment().put("FINETUNE_METRICS_PORT", String.valueOf(port));
    pb.environment().put("FINETUNE_LEADER_ELECTION_NAMESPACE", ns);
    pb.environment().put("FINETUNE_LEADER_ELECTION_LEASE", "main-process-test");
    pb.environment().put("POD_NAME", "main-process-0");
    Process process = pb.start();
    try {
      java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
      java.util.function.Function<String, java.net.http.HttpResponse<String>> get = path -> {
        try {
          return http.send(java.net.http.HttpRequest.newBuilder(
              java.net.URI.create("http://127.0.0.1:" + port + path)).build(),
              java.net.http.HttpResponse.BodyHandlers.ofString());
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      };
      await().atMost(Duration.ofSeconds(60)).ignoreExceptions().until(() -> get.apply("/readyz").statusCode() == 200);
      assertThat(get.apply("/healthz").statusCode()).isEqualTo(200);

      FineTuneJob job = Jobs.small("from-main", ns);
      client.resource(job).create();
      await().atMost(Duration.ofSeconds(30)).until(
          () -> client.batch().v1().jobs().inNamespace(ns).withName("from-main-train").get() != null);
      await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
        String metrics = get.apply("/metrics").body();
        assertThat(metrics).contains("finetune_operator_jobs{phase=\"Pending\"} 1.0");
        assertThat(metrics).contains("operator_sdk_reconciliations");
        assertThat(metrics).contains("jvm_memory_used_bytes");
      });
      assertThat(client.leases().inNamespace(ns).withName("main-process-test").get().getSpec().getHolderIdentity())
          .isEqualTo("main-process-0");
    } finally {
      process.destroy(); // SIGTERM
      boolean exited = process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS);
      if (!exited) {
        process.destroyForcibly();
      }
      String output = Files.readString(log);
      assertThat(exited).as("exits within 30 s of SIGTERM:\n" + output).isTrue();
      assertThat(output).contains("shutdown requested").contains("stopping operator");
      List<String> lines = output.lines().filter(l -> !l.isBlank()).toList();
      assertThat(lines).as(output).isNotEmpty().allSatisfy(l -> assertThat(l).startsWith("{\"ts\":"));
      for (String l : lines) {
        FineTuneJobs.json().readTree(l);
      }
    }
  }

  private static List<Pod> pods() {
    return client.pods().inNamespace(NS).withLabel(Names.JOB_LABEL, "e2e").list().getItems().stream()
        .sorted(Comparator.comparing(p -> p.getMetadata().getCreationTimestamp())).toList();
  }

  private static List<Pod> awaitPods(int n) {
    return await().atMost(Duration.ofSeconds(60)).until(RealApiServerOperatorTest::pods, l -> l.size() >= n);
  }

  private static void writeStatus(Pod pod, java.util.function.Consumer<Pod> kubelet) {
    await().atMost(Duration.ofSeconds(10)).ignoreExceptions().untilAsserted(() -> {
      Pod live = client.pods().inNamespace(NS).withName(pod.getMetadata().getName()).get();
      kubelet.accept(live);
      client.pods().inNamespace(NS).resource(live).updateStatus();
    });
  }

  private static FineTuneJob awaitFtj(Predicate<FineTuneJob> until) {
    return await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200)).until(
        () -> client.resources(FineTuneJob.class).inNamespace(NS).withName("e2e").get(),
        j -> j != null && j.getStatus() != null && until.test(j));
  }
}
