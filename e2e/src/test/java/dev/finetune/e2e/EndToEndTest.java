package dev.finetune.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.awaitility.Awaitility.await;

import ai.djl.ndarray.NDManager;
import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.testing.Holds;
import dev.finetune.api.testing.JobSetCrd;
import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.RealKubeApiServer.Result;
import dev.finetune.api.testing.Repo;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.helm.ChartInstall;
import dev.finetune.operator.FineTuneOperator;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.testing.FakeJobSetController;
import dev.finetune.trainer.model.Generator;
import dev.finetune.trainer.model.Model;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaimBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * The mission as a user lives it, on one machine: a real control plane (kube-apiserver, etcd,
 * kube-controller-manager with the Job controller), the chart's CRD and RBAC, the operator in-process as the
 * chart's ServiceAccount, and this test playing the node ({@link FakeNode}) with the packaged trainer jar.
 * Each scenario prints a line starting with {@code E2E-TIMING}.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class EndToEndTest {
  private static final String NS = "e2e";
  /** One small-cpu run takes about a minute on an idle 2-core machine, ten when other builds load it heavily. */
  private static final Duration RUN_TIMEOUT = Duration.ofMinutes(15);

  private static RealKubeApiServer server;
  private static KubernetesClient operatorClient;
  private static OperatorConfig config;
  private static FineTuneOperator operator;
  private static FakeNode node;
  private static Path root;
  private static int trainerPort;

  @BeforeAll
  static void start() throws IOException {
    Path jar = Repo.root().resolve("trainer-image/target/finetune-trainer.jar");
    assertThat(jar).as("the trainer jar: run mvn package (mvn verify builds it before these tests)").exists();
    server = RealKubeApiServer.start(true);
    server.installCrd();
    server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(NS).endMetadata().build()).create();

    operatorClient = ChartInstall.clientFor(server, ChartInstall.installRbac(server, "finetune", Map.of()));
    try (ServerSocket s = new ServerSocket(0)) {
      trainerPort = s.getLocalPort();
    }
    config = OperatorConfig.fromEnv(Map.of(
        "FINETUNE_TRAINER_PORT", Integer.toString(trainerPort),
        "FINETUNE_PROGRESS_INTERVAL_SECONDS", "1",
        "FINETUNE_TRAINER_JVM_OPTS", "-Xmx1g -XX:+ExitOnOutOfMemoryError",
        "FINETUNE_LEADER_ELECTION_NAMESPACE", "finetune-system",
        "FINETUNE_METRICS_PORT", "0"));
    startOperator();

    root = Files.createTempDirectory("e2e-node");
    // The node's "image": a copy of the built jar and its libraries, so a rebuild cannot change a running trainer.
    Path image = Files.createDirectories(root.resolve("image"));
    copyTree(jar.getParent().resolve("lib"), image.resolve("lib"));
    jar = Files.copy(jar, image.resolve(jar.getFileName()));
    String djlCache = System.getenv().getOrDefault("DJL_CACHE_DIR", Path.of(System.getProperty("user.home"), ".djl.ai").toString());
    node = new FakeNode(server.client(), root, Map.of(TrainerContract.TRAINER_JAR, jar.toString()),
        Map.of("DJL_CACHE_DIR", djlCache)).start("app.kubernetes.io/name", "finetune-trainer", RESULTS_POD_NAME_LABEL);
  }

  @AfterAll
  static void stop() {
    if (node != null) {
      node.close();
    }
    if (operator != null) {
      operator.close();
    }
    if (operatorClient != null) {
      operatorClient.close();
    }
    if (server != null) {
      server.close();
    }
    if (root != null) {
      FakeNode.deleteRecursively(root);
    }
  }

  private static void copyTree(Path from, Path to) throws IOException {
    try (var files = Files.walk(from)) {
      for (Path p : (Iterable<Path>) files::iterator) {
        Files.copy(p, to.resolve(from.relativize(p).toString()));
      }
    }
  }

  private static void startOperator() {
    operator = FineTuneOperator.create(operatorClient, config, new SimpleMeterRegistry()).start();
  }

  private static void stopOperator() {
    operator.close();
    operator = null;
  }

  /** Every scenario starts with the operator running, even after one that failed while it was stopped. */
  @BeforeEach
  void operatorRuns() {
    if (operator == null) {
      startOperator();
    }
  }

  // ---- scenarios ---------------------------------------------------------------------------------------------

  private static List<EpochRecord> happyHistory;
  private static byte[] happyWeights;

  @Test
  @Order(1)
  void happyPath() throws Exception {
    Set<Phase> phases = Collections.synchronizedSet(new LinkedHashSet<>());
    SharedIndexInformer<FineTuneJob> watch = recordPhases("small-cpu", phases);
    Instant applied = Instant.now();
    Path manifest = Files.createTempFile("small-cpu", ".yaml");
    Files.writeString(manifest, FineTuneJobs.toYaml(smallCpu("small-cpu")));
    // The trainer holds after each of epochs 1 to 3 until kubectl get ftj has shown that epoch and its loss.
    List<String> epochEnds = List.of("epoch-1-end", "epoch-2-end", "epoch-3-end");
    node.holdPods("small-cpu", List.of(epochEnds));
    Result r = server.kubectl("apply", "-n", NS, "-f", manifest.toString());
    assertThat(r.exitCode()).as(r.output()).isZero();
    Set<String> rows = new LinkedHashSet<>();
    AtomicReference<Instant> firstEpoch = new AtomicReference<>();
    for (int epoch = 1; epoch <= epochEnds.size(); epoch++) {
      Pod held = node.awaitHeld("small-cpu", epochEnds.get(epoch - 1));
      String shown = epoch + "/4";
      String row = await().atMost(Holds.HANG_GUARD).pollInterval(Duration.ofMillis(200)).until(
          () -> server.kubectl("get", "ftj", "-n", NS, "small-cpu", "--no-headers").output().strip(),
          line -> line.split("\\s+").length > 3 && line.split("\\s+")[2].equals(shown));
      firstEpoch.compareAndSet(null, Instant.now());
      rows.add(row);
      node.release(held, epochEnds.get(epoch - 1));
    }
    FineTuneJob done = watchUntilTerminal("small-cpu", rows, firstEpoch);
    Duration wall = Duration.between(applied, Instant.now());
    watch.close();

    assertThat(done.getStatus().phase).as(describe("small-cpu")).isEqualTo(Phase.Succeeded);
    assertThat(phases).containsSubsequence(Phase.Pending, Phase.Running, Phase.Succeeded);
    // kubectl get ftj showed the epoch and the losses moving while it ran.
    assertThat(rows.stream().map(row -> row.split("\\s+")[2]).filter(e -> e.matches("\\d+/4")).distinct())
        .as("EPOCH values seen in kubectl get ftj: " + rows).contains("1/4", "2/4", "3/4");
    assertThat(rows).allSatisfy(row -> assertThat(row.split("\\s+")[3]).matches("\\d+\\.\\d+"));

    FineTuneJobStatus s = done.getStatus();
    assertThat(s.history).hasSize(s.epoch);
    assertThat(s.epoch).isBetween(1, 4);
    assertThat(s.bestEpoch).isNotNull();
    assertThat(s.bestValidationLoss).isEqualTo(s.history.get(s.bestEpoch - 1).validationLoss);
    assertThat(s.checkpoint.best).isNotBlank();
    assertThat(s.checkpoint.latest).startsWith("checkpoints/");
    assertThat(s.completionTime).isNotBlank();
    assertThat(s.observedGeneration).isEqualTo(done.getMetadata().getGeneration());

    String describe = server.kubectl("describe", "ftj", "-n", NS, "small-cpu").output();
    assertThat(describe).contains("Events:", "Created", "Started", "EpochFinished", "Succeeded");
    // -o wide: the model, the precision and device the trainer reported, and where the results are
    String wide = server.kubectl("get", "ftj", "-n", NS, "small-cpu", "-o", "wide").output();
    assertThat(wide).contains("MODEL", "PRECISION", "DEVICE", "RESULTS", " scratch ", " fp32 ", " cpu ",
        " pvc/small-cpu-checkpoints:");

    Path run = runDir(done);
    assertThat(run.resolve("best/config.json")).exists();
    assertThat(run.resolve("best/model.safetensors")).exists();
    assertThat(run.resolve("best/tokenizer.json")).exists();
    assertThat(run.resolve(TrainerContract.SUMMARY_FILE)).exists();
    assertThat(run.resolve(TrainerContract.PLOT_FILE)).exists();
    assertThat(Files.readAllLines(run.resolve(TrainerContract.RESPONSES_FILE))).isNotEmpty();
    List<EpochRecord> history = history(run);
    assertThat(history).hasSize(s.epoch);
    // best/ loads again and answers.
    try (NDManager manager = NDManager.newBaseManager(); Model model = Model.load(run.resolve("best"), manager)) {
      assertThat(new Generator(model).generate("<|User|>\nReverse the word.\nsun\n\n<|Assistant|>\n", 8)).isNotNull();
    }
    happyHistory = history;
    happyWeights = Files.readAllBytes(run.resolve("best/model.safetensors"));

    Pod pod = trainerPods("small-cpu").get(0);
    timing("happy-path", wall, Duration.between(applied, node.seenAt(pod)), Duration.between(applied, firstEpoch.get()));
  }

  @Test
  @Order(2)
  void crashAndSigtermResumeToTheSameResult() throws Exception {
    Instant applied = Instant.now();
    // The first Pod holds in the middle of epoch 2, its retry (resumed from epoch 1) in the middle of epoch 3.
    node.holdPods("crash", List.of(List.of(MID_EPOCH_2), List.of(MID_EPOCH_3)));
    createSmallCpu("crash");

    // Kill the trainer (SIGKILL) in the middle of epoch 2, as an OOM kill or a node crash would.
    Pod first = node.awaitHeld("crash", MID_EPOCH_2);
    assertThat(node.kill(same(first))).isEqualTo(1);
    // The retry: SIGTERM in the middle of epoch 3 (a node shutting down); it checkpoints and exits with the retry code.
    Pod second = node.awaitHeld("crash", MID_EPOCH_3);
    assertThat(node.terminate(same(second))).isEqualTo(1);

    FineTuneJob done = awaitTerminal("crash");
    assertThat(done.getStatus().phase).as(describe("crash")).isEqualTo(Phase.Succeeded);
    List<Pod> pods = trainerPods("crash");
    assertThat(pods).hasSize(3);
    assertThat(pods).extracting(node::exitCode).containsExactlyInAnyOrder(137, TrainerContract.ExitCodes.INTERRUPTED, 0);
    assertThat(done.getStatus().restarts).isEqualTo(2);
    assertThat(server.kubectl("describe", "ftj", "-n", NS, "crash").output()).contains("CheckpointRestored");

    Path run = runDir(done);
    List<EpochRecord> history = history(run);
    assertThat(history).hasSameSizeAs(happyHistory);
    for (int i = 0; i < history.size(); i++) {
      assertThat(history.get(i).trainLoss).as("epoch %d train loss", i + 1).isEqualTo(happyHistory.get(i).trainLoss);
      assertThat(history.get(i).validationLoss).as("epoch %d validation loss", i + 1).isEqualTo(happyHistory.get(i).validationLoss);
    }
    assertThat(Files.readAllBytes(run.resolve("best/model.safetensors"))).as("final weights").isEqualTo(happyWeights);
    timing("crash-sigterm-and-resume", Duration.between(applied, Instant.now()), null, null);
  }

  @Test
  @Order(3)
  void earlyStoppingKeepsTheBestEpoch() throws Exception {
    Instant applied = Instant.now();
    // Training teaches "say the word", validation asks for it reversed: validation loss falls, then rises.
    Path data = node.claimDir(NS, "datasets");
    Files.createDirectories(data);
    StringBuilder train = new StringBuilder();
    StringBuilder validation = new StringBuilder();
    java.util.Random rnd = new java.util.Random(1);
    String[] words = {"apple", "river", "stone", "cloud", "green", "tiger", "piano", "light", "ocean", "bread"};
    for (int i = 0; i < 96; i++) {
      String w = words[rnd.nextInt(words.length)];
      train.append(String.format("{\"instruction\": \"Say the word.\", \"input\": \"%s\", \"output\": \"%s\"}%n", w, w));
    }
    for (int i = 0; i < 16; i++) {
      String w = words[rnd.nextInt(words.length)];
      validation.append(String.format("{\"instruction\": \"Say the word.\", \"input\": \"%s\", \"output\": \"%s\"}%n", w,
          new StringBuilder(w).reverse()));
    }
    Files.writeString(data.resolve("train.jsonl"), train);
    Files.writeString(data.resolve("validation.jsonl"), validation);
    server.client().persistentVolumeClaims().inNamespace(NS).resource(new PersistentVolumeClaimBuilder()
        .withNewMetadata().withName("datasets").endMetadata()
        .withNewSpec().withAccessModes("ReadWriteOnce").withNewResources().addToRequests("storage", new Quantity("1Gi")).endResources().endSpec()
        .build()).create();
    apply("""
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: early
        spec:
          model:
            scratch: {layers: 1, embeddingDim: 32, heads: 2, contextLength: 64, seed: 2}
          dataset:
            claimName: datasets
            files: {train: train.jsonl, validation: validation.jsonl}
            promptStyle: phi3
            maskPrompt: true
            maxLength: 64
          training: {epochs: 40, batchSize: 8, learningRate: 0.01, seed: 4}
          earlyStopping: {patience: 2}
          checkpoints: {keep: 1, size: 1Gi}
          evaluation: {enabled: false}
          resources: {cpu: "1", memory: 1Gi}
        """);
    FineTuneJob done = awaitTerminal("early");
    FineTuneJobStatus s = done.getStatus();
    assertThat(s.phase).as(describe("early")).isEqualTo(Phase.Succeeded);
    assertThat(s.earlyStopped).isTrue();
    assertThat(s.conditions).anySatisfy(c -> {
      assertThat(c.getType()).isEqualTo("EarlyStopped");
      assertThat(c.getStatus()).isEqualTo("True");
    });
    assertThat(s.epoch).isEqualTo(s.bestEpoch + 2).isLessThan(40);
    assertThat(s.history.get(s.history.size() - 1).validationLoss).isGreaterThan(s.bestValidationLoss);
    // best/ holds the best epoch's weights: the same tensors as that epoch's checkpoint.
    Path run = runDir(done);
    Path bestCheckpoint = run.resolve(String.format("checkpoints/epoch-%04d", s.bestEpoch));
    assertThat(bestCheckpoint).isDirectory();
    assertThat(server.kubectl("describe", "ftj", "-n", NS, "early").output()).contains("EarlyStopped");
    timing("early-stopping", Duration.between(applied, Instant.now()), null, null);
  }

  @Test
  @Order(4)
  void badInputFailsWithoutRetries() throws Exception {
    Instant applied = Instant.now();
    StringBuilder rows = new StringBuilder();
    for (int i = 1; i <= 20; i++) {
      rows.append(i == 7
          ? "{\"instruction\": \"Add the two numbers.\", \"input\": \"3 + 4\"}\n"
          : String.format("{\"instruction\": \"Add the two numbers.\", \"input\": \"%d + 1\", \"output\": \"%d\"}%n", i, i + 1));
    }
    server.client().configMaps().inNamespace(NS).resource(new ConfigMapBuilder()
        .withNewMetadata().withName("bad-data").endMetadata().addToData("data.jsonl", rows.toString()).build()).create();
    apply("""
        apiVersion: finetune.dev/v1alpha1
        kind: FineTuneJob
        metadata:
          name: bad-data
        spec:
          model:
            scratch: {layers: 1, embeddingDim: 32, heads: 2, contextLength: 64}
          dataset:
            configMap: {name: bad-data, key: data.jsonl}
            promptStyle: phi3
            maxLength: 64
          checkpoints: {size: 1Gi}
          backoffLimit: 3
        """);
    FineTuneJob done = awaitTerminal("bad-data");
    assertThat(done.getStatus().phase).isEqualTo(Phase.Failed);
    assertThat(done.getStatus().message).as(describe("bad-data")).contains("data.jsonl line 7: field 'output' is missing");
    // Not retried: the Job's podFailurePolicy fails the Job as soon as the trainer exits with the bad-job code.
    await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> assertThat(
        server.client().batch().v1().jobs().inNamespace(NS).withName("bad-data-train").get().getStatus().getConditions())
        .anySatisfy(c -> {
          assertThat(c.getType()).isEqualTo("Failed");
          assertThat(c.getReason()).isEqualTo("PodFailurePolicy");
        }));
    // A failed Job makes no more Pods: the one that failed is the only one there will be.
    assertThat(server.client().batch().v1().jobs().inNamespace(NS).withName("bad-data-train").get().getStatus().getFailed())
        .isEqualTo(1);
    assertThat(trainerPods("bad-data")).as("bad input is not retried").hasSize(1);

    // An invalid spec is refused by the API server: by its schema, or by a CEL rule in the validator's words.
    Result refused = server.kubectl("apply", "-n", NS, "-f", Repo.root().resolve("api/src/test/resources/broken/negative-epochs.yaml").toString());
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.output()).contains("spec.training.epochs");
    Result cel = server.kubectl("apply", "-n", NS, "-f", Repo.root().resolve("api/src/test/resources/broken/split-not-one.yaml").toString());
    assertThat(cel.exitCode()).as(cel.output()).isNotZero();
    assertThat(cel.output()).contains("spec.dataset.split", "fractions sum to 1.2, must be 1.0 (train + validation + test)");
    assertThat(get("split-not-one")).isNull();
    timing("bad-input", Duration.between(applied, Instant.now()), null, null);
  }

  @Test
  @Order(5)
  void operatorRestartMidRunMakesNoSecondJobAndCatchesUp() throws Exception {
    Instant applied = Instant.now();
    FineTuneJob job = smallCpu("restart");
    job.getSpec().ttlSecondsAfterFinished = 0;
    // The trainer holds in the middle of epoch 2 while the operator restarts, and after epoch 3 while it goes away.
    node.holdPods("restart", List.of(List.of(MID_EPOCH_2, "epoch-3-end")));
    server.client().resource(job).create();
    Pod pod = node.awaitHeld("restart", MID_EPOCH_2);
    awaitStatus("restart", s -> s.epoch != null && s.epoch >= 1);
    stopOperator();
    startOperator();
    node.release(pod, MID_EPOCH_2);
    node.awaitHeld("restart", "epoch-3-end");
    awaitStatus("restart", s -> s.epoch != null && s.epoch >= 3 && s.history != null && s.history.size() >= 3);
    // Away again when the Job ends: with ttlSecondsAfterFinished 0 the TTL controller would delete it at once, but
    // the operator sets the Job's TTL only once it has recorded the end, so nothing is lost.
    stopOperator();
    node.release(pod, "epoch-3-end");
    await().atMost(RUN_TIMEOUT).until(() -> server.client().batch().v1().jobs().inNamespace(NS).withName("restart-train").get()
        .getStatus().getConditions().stream().anyMatch(c -> "Complete".equals(c.getType()) && "True".equals(c.getStatus())));
    var finished = server.client().batch().v1().jobs().inNamespace(NS).withName("restart-train").get();
    assertThat(finished).as("kept until recorded").isNotNull();
    assertThat(finished.getSpec().getTtlSecondsAfterFinished()).as("no TTL before the end is recorded").isNull();
    assertThat(server.client().batch().v1().jobs().inNamespace(NS).withLabel(Names.JOB_LABEL, "restart").list().getItems()).hasSize(1);
    assertThat(trainerPods("restart")).hasSize(1);
    startOperator();
    FineTuneJob done = awaitTerminal("restart");
    assertThat(done.getStatus().phase).as(describe("restart")).isEqualTo(Phase.Succeeded);
    assertThat(done.getStatus().history).hasSize(done.getStatus().epoch);
    assertThat(done.getStatus().history).extracting(e -> e.validationLoss)
        .containsExactlyElementsOf(happyHistory.stream().map(e -> e.validationLoss).toList());
    // Recorded: the TTL controller deletes the finished Job; the FineTuneJob keeps its phase and results.
    await().atMost(Duration.ofSeconds(60)).until(
        () -> server.client().batch().v1().jobs().inNamespace(NS).withName("restart-train").get() == null);
    Thread.sleep(3_000); // the operator reconciles the Job's deletion; nothing it does then may undo the record
    FineTuneJob after = get("restart");
    assertThat(after.getStatus().phase).as(describe("restart")).isEqualTo(Phase.Succeeded);
    assertThat(after.getStatus().reason).isEqualTo(done.getStatus().reason);
    assertThat(after.getStatus().history).hasSameSizeAs(done.getStatus().history);
    assertThat(after.getStatus().bestEpoch).isEqualTo(done.getStatus().bestEpoch);
    timing("operator-restart-and-ttl", Duration.between(applied, Instant.now()), null, null);
  }

  /** An eviction (DisruptionTarget) is not a failure: with backoffLimit 0 the Job still gets a new Pod. */
  @Test
  @Order(6)
  void anEvictedTrainerGetsANewPodWithoutUsingABackoff() throws Exception {
    Instant applied = Instant.now();
    FineTuneJob job = smallCpu("evicted");
    job.getSpec().backoffLimit = 0;
    node.holdPods("evicted", List.of(List.of(MID_EPOCH_2)));
    server.client().resource(job).create();

    Pod first = node.awaitHeld("evicted", MID_EPOCH_2);
    assertThat(server.client().pods().inNamespace(NS).withName(first.getMetadata().getName()).evict()).isTrue();

    FineTuneJob done = awaitTerminal("evicted");
    assertThat(done.getStatus().phase).as(describe("evicted")).isEqualTo(Phase.Succeeded);
    assertThat(node.exitCode(first)).as("the trainer checkpointed on SIGTERM").isEqualTo(TrainerContract.ExitCodes.INTERRUPTED);
    // The evicted Pod is gone (the eviction deleted it); its replacement ran to the end; the Job counted no failure.
    assertThat(trainerPods("evicted")).singleElement()
        .satisfies(p -> assertThat(p.getMetadata().getName()).isNotEqualTo(first.getMetadata().getName()));
    assertThat(server.client().batch().v1().jobs().inNamespace(NS).withName("evicted-train").get().getStatus().getFailed())
        .as("failures counted against backoffLimit 0").isIn(null, 0);
    assertThat(history(runDir(done))).extracting(e -> e.validationLoss)
        .containsExactlyElementsOf(happyHistory.stream().map(e -> e.validationLoss).toList());
    assertThat(Files.readAllBytes(runDir(done).resolve("best/model.safetensors"))).as("final weights").isEqualTo(happyWeights);
    timing("eviction", Duration.between(applied, Instant.now()), null, null);
  }

  /**
   * Suspend: created suspended there is no Pod; resumed, one starts; suspended while training, its Pod is deleted
   * and the trainer checkpoints on SIGTERM within the grace period; resumed again, it continues exactly.
   */
  @Test
  @Order(7)
  void suspendAndResumeContinueExactly() throws Exception {
    Instant applied = Instant.now();
    FineTuneJob job = smallCpu("suspend");
    job.getSpec().suspend = true;
    node.holdPods("suspend", List.of(List.of(MID_EPOCH_2)));
    server.client().resource(job).create();
    awaitStatus("suspend", s -> s.phase == Phase.Suspended);
    // The Job controller has seen the suspended Job (its Suspended condition): it made no Pod, and makes none.
    await().atMost(Duration.ofSeconds(60)).until(() -> {
      var j = server.client().batch().v1().jobs().inNamespace(NS).withName("suspend-train").get();
      return j != null && j.getStatus() != null && j.getStatus().getConditions() != null && j.getStatus().getConditions()
          .stream().anyMatch(c -> "Suspended".equals(c.getType()) && "True".equals(c.getStatus()));
    });
    assertThat(trainerPods("suspend")).as("a suspended job has no Pod").isEmpty();

    setSuspend("suspend", false);
    Pod first = node.awaitHeld("suspend", MID_EPOCH_2);
    setSuspend("suspend", true);
    await().atMost(Duration.ofSeconds(60)).untilAsserted(() -> {
      assertThat(trainerPods("suspend")).as("the suspended Job's Pod is deleted").isEmpty();
      assertThat(get("suspend").getStatus().phase).isEqualTo(Phase.Suspended);
    });
    assertThat(node.exitCode(first)).as("checkpointed on SIGTERM, not killed").isEqualTo(TrainerContract.ExitCodes.INTERRUPTED);

    setSuspend("suspend", false);
    FineTuneJob done = awaitTerminal("suspend");
    assertThat(done.getStatus().phase).as(describe("suspend")).isEqualTo(Phase.Succeeded);
    assertThat(history(runDir(done))).extracting(e -> e.validationLoss)
        .containsExactlyElementsOf(happyHistory.stream().map(e -> e.validationLoss).toList());
    assertThat(Files.readAllBytes(runDir(done).resolve("best/model.safetensors"))).as("final weights").isEqualTo(happyWeights);
    assertThat(describe("suspend")).contains("Suspended", "Resumed");
    timing("suspend-and-resume", Duration.between(applied, Instant.now()), null, null);
  }

  /**
   * Two nodes: the leader Pod (rank 0, the checkpoint volume) and a worker Pod of an Indexed Job meet at the rendezvous
   * Service and train as one; the worker is killed in the middle of epoch 2, the leader's next collective fails, both
   * restart and resume from epoch 1's checkpoint, and the run ends with the losses of the same job on one node.
   */
  @Test
  @Order(8)
  void twoNodesTrainAsOneAndRestartTogetherWhenOneIsKilled() throws Exception {
    Map<String, String> libtorch = libtorch();
    Instant applied = Instant.now();
    // 3 epochs without gradient clipping: with it, this small job at its high learning rate amplifies the rounding
    // differences of a split batch from 4e-8 after epoch 1 to 6e-4 after epoch 3; without it they stay below 1e-5
    // (measured: 7.5e-6 at most). The trainer's own tests hold 2 ranks to 1e-5 of 1 process on the shared fixtures.
    FineTuneJob oneNode = smallCpu("solo");
    oneNode.getSpec().training.maxGradNorm = null;
    oneNode.getSpec().training.epochs = 3;
    node.env("solo", libtorch);
    server.client().resource(oneNode).create();
    FineTuneJob solo = awaitTerminal("solo");
    assertThat(solo.getStatus().phase).as(describe("solo")).isEqualTo(Phase.Succeeded);
    soloHistory = history(runDir(solo));
    assertThat(solo.getStatus().ranks).as("one rank: no Ranks column").isNull();

    FineTuneJob pair = smallCpu("pair");
    pair.getSpec().training.maxGradNorm = null;
    pair.getSpec().training.epochs = 3;
    pair.getSpec().resources.nodes = 2;
    node.env("pair", libtorch);
    node.holdPods("pair-workers", List.of(List.of(MID_EPOCH_2)));
    server.client().resource(pair).create();
    Pod worker = node.awaitHeld("pair", MID_EPOCH_2);
    awaitStatus("pair", s -> "2/2".equals(s.ranks));
    assertThat(server.kubectl("get", "ftj", "-n", NS, "pair", "-o", "wide").output()).contains("RANKS").contains(" 2/2 ");
    assertThat(node.kill(same(worker))).isEqualTo(1);

    FineTuneJob done = awaitTerminal("pair");
    assertThat(done.getStatus().phase).as(describe("pair") + node.logs("pair")).isEqualTo(Phase.Succeeded);
    List<Pod> leaders = trainerPods("pair").stream()
        .filter(p -> Names.LEADER.equals(p.getMetadata().getLabels().get(Names.ROLE_LABEL))).toList();
    List<Pod> workers = trainerPods("pair").stream()
        .filter(p -> Names.WORKER.equals(p.getMetadata().getLabels().get(Names.ROLE_LABEL))).toList();
    assertThat(leaders).extracting(node::exitCode).as("the leader lost its peer: the retry code")
        .containsExactlyInAnyOrder(TrainerContract.ExitCodes.CRASHED, 0);
    assertThat(workers).extracting(node::exitCode).containsExactlyInAnyOrder(137, 0);
    assertThat(done.getStatus().restarts).isEqualTo(1);
    assertThat(done.getStatus().rankFailures).isEqualTo(2);
    assertThat(done.getStatus().ranks).isEqualTo("0/2");
    assertThat(server.client().batch().v1().jobs().inNamespace(NS).withName("pair-workers").get().getStatus().getSucceeded())
        .isEqualTo(1);
    String described = describe("pair");
    assertThat(described).contains("RankFailed", "Rank 1 on node 1 (Pod " + worker.getMetadata().getName()
        + ") exited with code 137", "Rank 0 on node 0", "CheckpointRestored");

    // rank 0 alone wrote the run folder, and the two nodes gave the one node's losses to float rounding (a margin of
    // 13 over what was measured, for another CPU's rounding)
    assertSameLosses(history(runDir(done)), soloHistory);
    timing("two-nodes-kill-and-resume", Duration.between(applied, Instant.now()), null, null);
  }

  /** The environment of the libtorch with c10d (Gloo) that the CPU image would carry; skips without it. */
  private static Map<String, String> libtorch() {
    Path lib = Repo.root().resolve("trainer-image/target/native-debian");
    Assumptions.assumeTrue(Files.exists(lib.resolve("libfinetune_native.so")),
        "skipped: no native library with c10d (.ci/run builds it against Debian's libtorch)");
    return Map.of("PYTORCH_LIBRARY_PATH", lib.toString(), "PYTORCH_VERSION", "1.13.1",
        "PYTORCH_FLAVOR", "cpu", "DJL_CACHE_DIR", lib.resolve("cache").toString(),
        "FINETUNE_NATIVE_LIB", lib.resolve("libfinetune_native.so").toString());
  }

  /** The losses of one node's run of the small job (3 epochs, no clipping), for the two-node runs to match. */
  private static List<EpochRecord> soloHistory;

  private static void assertSameLosses(List<EpochRecord> two, List<EpochRecord> one) {
    assertThat(two).hasSameSizeAs(one);
    for (int i = 0; i < one.size(); i++) {
      assertThat(two.get(i).trainLoss).as("epoch %d train loss", i + 1).isCloseTo(one.get(i).trainLoss, within(1e-4));
      assertThat(two.get(i).validationLoss).as("epoch %d validation loss", i + 1)
          .isCloseTo(one.get(i).validationLoss, within(1e-4));
    }
  }

  /**
   * The same two nodes on a cluster with JobSet (its CRD installed now, the operator restarted to find it, and
   * {@link FakeJobSetController} playing its controller): one JobSet; the worker is killed in the middle of epoch 2,
   * its Job fails, the JobSet deletes both Jobs (the leader is stopped with them) and makes them anew, and the two new
   * Pods resume from the checkpoint to the one node's losses. Last: it leaves JobSet installed.
   */
  @Test
  @Order(10)
  void twoNodesAsAJobSetRestartTogether() throws Exception {
    Assumptions.assumeTrue(soloHistory != null, "skipped: the one-node run of the two-node scenario did not run");
    Map<String, String> libtorch = libtorch();
    JobSetCrd.install(server);
    await().atMost(Duration.ofSeconds(30)).until(() -> FineTuneOperator.servesJobSets(server.client()));
    stopOperator();
    startOperator();
    try (FakeJobSetController jobSets = new FakeJobSetController(server.client(), NS)) {
      Instant applied = Instant.now();
      FineTuneJob pair = smallCpu("pairset");
      pair.getSpec().training.maxGradNorm = null;
      pair.getSpec().training.epochs = 3;
      pair.getSpec().resources.nodes = 2;
      node.env("pairset", libtorch);
      node.holdPods(JobSet.childJob(Names.job(pair), Names.WORKERS, 0), List.of(List.of(MID_EPOCH_2)));
      server.client().resource(pair).create();
      Pod worker = node.awaitHeld("pairset", MID_EPOCH_2);
      assertThat(server.client().resources(JobSet.class).inNamespace(NS).withName("pairset-train").get()).isNotNull();
      awaitStatus("pairset", st -> "2/2".equals(st.ranks));
      assertThat(node.kill(same(worker))).isEqualTo(1);

      FineTuneJob done = awaitTerminal("pairset");
      assertThat(done.getStatus().phase).as(describe("pairset") + node.logs("pairset")).isEqualTo(Phase.Succeeded);
      assertThat(done.getStatus().restarts).as("the JobSet made its Jobs anew once").isEqualTo(1);
      assertThat(server.client().resources(JobSet.class).inNamespace(NS).withName("pairset-train").get().getStatus()
          .restarts).isEqualTo(1);
      assertThat(describe("pairset")).contains("Created JobSet pairset-train", "RankFailed",
          "Rank 1 on node 1 (Pod " + worker.getMetadata().getName() + ") exited with code 137", "CheckpointRestored");
      assertSameLosses(history(runDir(done)), soloHistory);
      timing("two-nodes-jobset-kill-and-resume", Duration.between(applied, Instant.now()), null, null);
    }
  }

  /** examples/results-pod.yaml's app.kubernetes.io/name: the node runs it as it runs trainer Pods. */
  private static final String RESULTS_POD_NAME_LABEL = "finetune-results";

  /**
   * Results outlive the job, as the README's "Getting the results" says: a finished job deleted as kubectl delete does
   * keeps its claim (retainClaim, true by the CRD's default); examples/results-pod.yaml with that claim filled in is
   * accepted, runs, and kubectl cp (tar through kubectl exec) copies best/ off it; the Pod and then the claim are
   * deleted as the README says. A job with retainClaim: false loses its claim to the garbage collector.
   */
  @Test
  @Order(9)
  void resultsOutliveTheJobUnlessItSaysOtherwise() throws Exception {
    Instant applied = Instant.now();
    FineTuneJob keep = smallCpu("keep");
    keep.getSpec().training.epochs = 2;
    keep.getSpec().checkpoints.retainClaim = null; // not sent: the CRD's default applies
    server.client().resource(keep).create();
    FineTuneJob drop = smallCpu("drop");
    drop.getSpec().checkpoints.retainClaim = false;
    drop.getSpec().suspend = true; // its claim is all this needs; no Pod
    String dropUid = server.client().resource(drop).create().getMetadata().getUid();
    assertThat(get("keep").getSpec().checkpoints.retainClaim).as("the CRD's default").isTrue();

    FineTuneJob done = awaitTerminal("keep");
    assertThat(done.getStatus().phase).as(describe("keep")).isEqualTo(Phase.Succeeded);
    assertThat(done.getStatus().results).isEqualTo("pvc/keep-checkpoints:keep");
    assertThat(describe("keep")).contains("results in pvc/keep-checkpoints:keep", "kept when this FineTuneJob is deleted");
    Path best = runDir(done).resolve("best");
    assertThat(best.resolve("config.json")).exists();
    var kept = server.client().persistentVolumeClaims().inNamespace(NS).withName("keep-checkpoints").get();
    assertThat(kept.getMetadata().getOwnerReferences()).isEmpty();
    String keptUid = kept.getMetadata().getUid();
    awaitStatus("drop", s -> s.phase == Phase.Suspended);
    assertThat(server.client().persistentVolumeClaims().inNamespace(NS).withName("drop-checkpoints").get()
        .getMetadata().getOwnerReferences()).singleElement().satisfies(o -> assertThat(o.getUid()).isEqualTo(dropUid));

    // kubectl delete ftj: the garbage collector deletes what each job owned; once keep's Job and ConfigMap are gone
    // it has dealt with keep, and its claim is still there
    Result deleted = server.kubectl("delete", "ftj", "keep", "drop", "-n", NS, "--wait=true");
    assertThat(deleted.exitCode()).as(deleted.output()).isZero();
    await().atMost(Duration.ofSeconds(120)).untilAsserted(() -> {
      assertThat(server.client().batch().v1().jobs().inNamespace(NS).withName("keep-train").get()).isNull();
      assertThat(server.client().configMaps().inNamespace(NS).withName("keep-spec").get()).isNull();
      assertThat(server.client().persistentVolumeClaims().inNamespace(NS).withName("drop-checkpoints").get())
          .as("retainClaim: false").isNull();
    });
    kept = server.client().persistentVolumeClaims().inNamespace(NS).withName("keep-checkpoints").get();
    assertThat(kept).as("the default keeps the results").isNotNull();
    assertThat(kept.getMetadata().getUid()).isEqualTo(keptUid);
    assertThat(kept.getMetadata().getDeletionTimestamp()).isNull();

    // re-created under the same name with another learning rate (the way to change a started job): it adopts the
    // kept claim, and the trainer refuses to mix two runs in one folder, saying how to train the new spec
    FineTuneJob changed = smallCpu("keep");
    changed.getSpec().training.epochs = 2;
    changed.getSpec().training.learningRate = 2.0e-3;
    server.client().resource(changed).create();
    FineTuneJob refused = awaitTerminal("keep");
    assertThat(refused.getStatus().phase).as(describe("keep")).isEqualTo(Phase.Failed);
    assertThat(refused.getStatus().reason).isEqualTo("InvalidSpec");
    assertThat(refused.getStatus().message).contains("was trained with a different spec", "spec.training.learningRate",
        "spec.checkpoints.path");
    assertThat(describe("keep")).contains("The trainer refused the spec (Job keep-train)");
    assertThat(server.client().persistentVolumeClaims().inNamespace(NS).withName("keep-checkpoints").get())
        .satisfies(c -> assertThat(c.getMetadata().getUid()).isEqualTo(keptUid))
        .satisfies(c -> assertThat(c.getMetadata().getOwnerReferences()).isEmpty());
    deleted = server.kubectl("delete", "ftj", "keep", "-n", NS, "--wait=true");
    assertThat(deleted.exitCode()).as(deleted.output()).isZero();
    await().atMost(Duration.ofSeconds(120)).until(
        () -> server.client().batch().v1().jobs().inNamespace(NS).withName("keep-train").get() == null);
    assertThat(best.resolve("config.json")).as("the refused run left the results alone").exists();

    // the README's recipe: the example Pod with the job's claim, which passes the restricted Pod Security Standard
    Result labelled = server.kubectl("label", "namespace", NS, "pod-security.kubernetes.io/warn=restricted", "--overwrite");
    assertThat(labelled.exitCode()).as(labelled.output()).isZero();
    Path manifest = Files.createTempFile(root, "results-pod", ".yaml");
    String example = Files.readString(Repo.examples().resolve("results-pod.yaml"));
    assertThat(example).contains("claimName: gpt2-alpaca-checkpoints");
    Files.writeString(manifest, example.replace("gpt2-alpaca-checkpoints", "keep-checkpoints"));
    Result created = server.kubectl("apply", "-n", NS, "-f", manifest.toString());
    assertThat(created.exitCode()).as(created.output()).isZero();
    assertThat(created.output()).as("no PodSecurity warning").doesNotContain("Warning");
    Result ready = server.kubectl("wait", "--for=condition=Ready", "pod/results", "-n", NS, "--timeout=120s");
    assertThat(ready.exitCode()).as(ready.output()).isZero();
    Pod results = server.client().pods().inNamespace(NS).withName("results").get();
    assertThat(results.getSpec().getVolumes()).singleElement().satisfies(v -> {
      assertThat(v.getPersistentVolumeClaim().getClaimName()).isEqualTo("keep-checkpoints");
      assertThat(v.getPersistentVolumeClaim().getReadOnly()).isTrue();
    });
    // kubectl cp results:/results/keep/best ./best: tar in the container, unpacked here
    FakeNode.Exec tar = node.exec(results, "tar", "cf", "-", "-C", "/results/keep", "best");
    assertThat(tar.exitCode()).as(tar.stderr()).isZero();
    Path copied = Files.createTempDirectory(root, "copied");
    Process untar = new ProcessBuilder("tar", "xf", "-", "-C", copied.toString()).redirectErrorStream(true).start();
    try (var in = untar.getOutputStream()) {
      in.write(tar.stdout());
    }
    String untarOutput = new String(untar.getInputStream().readAllBytes());
    assertThat(untar.waitFor()).as(untarOutput).isZero();
    assertThat(copied.resolve("best/config.json")).hasSameBinaryContentAs(best.resolve("config.json"));
    assertThat(copied.resolve("best/model.safetensors")).hasSameBinaryContentAs(best.resolve("model.safetensors"));
    assertThat(copied.resolve("best/tokenizer.json")).exists();

    // kubectl delete pod results; then, when done with the results, kubectl delete pvc keep-checkpoints
    Result podGone = server.kubectl("delete", "pod", "results", "-n", NS, "--wait=true", "--timeout=120s");
    assertThat(podGone.exitCode()).as(podGone.output()).isZero();
    assertThat(server.client().persistentVolumeClaims().inNamespace(NS).withName("keep-checkpoints").get()).isNotNull();
    Result claimGone = server.kubectl("delete", "pvc", "keep-checkpoints", "-n", NS, "--wait=true", "--timeout=120s");
    assertThat(claimGone.exitCode()).as(claimGone.output()).isZero();
    assertThat(server.client().persistentVolumeClaims().inNamespace(NS).withName("keep-checkpoints").get()).isNull();
    timing("results-outlive-the-job", Duration.between(applied, Instant.now()), null, null);
  }

  // ---- helpers -----------------------------------------------------------------------------------------------

  /** Test hold points in the middle of epochs 2 and 3 (after their second optimizer step). */
  private static final String MID_EPOCH_2 = "epoch-2-step-2";
  private static final String MID_EPOCH_3 = "epoch-3-step-2";

  private static Predicate<Pod> same(Pod pod) {
    return p -> p.getMetadata().getUid().equals(pod.getMetadata().getUid());
  }

  /** Waits until the job's status satisfies the condition (the trainer holds meanwhile, so it waits on the operator). */
  private static FineTuneJobStatus awaitStatus(String name, Predicate<FineTuneJobStatus> condition) {
    return await().atMost(Holds.HANG_GUARD).pollInterval(Duration.ofMillis(200)).until(() -> {
      FineTuneJob j = get(name);
      return j == null ? null : j.getStatus();
    }, s -> s != null && condition.test(s));
  }

  /**
   * Sets spec.suspend as {@code kubectl patch --type merge} does: no resourceVersion precondition, so a status
   * update the operator makes at the same moment does not make it fail with a conflict (edit() read-modify-writes).
   */
  private static void setSuspend(String name, boolean suspend) {
    server.client().resources(FineTuneJob.class).inNamespace(NS).withName(name)
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":" + suspend + "}}");
  }

  private static void apply(String yaml) throws IOException {
    Path file = Files.createTempFile(root, "job", ".yaml");
    Files.writeString(file, yaml);
    Result r = server.kubectl("apply", "-n", NS, "-f", file.toString());
    assertThat(r.exitCode()).as(r.output()).isZero();
  }

  private static FineTuneJob get(String name) {
    return server.client().resources(FineTuneJob.class).inNamespace(NS).withName(name).get();
  }

  /**
   * Every phase the job's status passes through, from an informer (a poll can miss a short Pending; a bare watch
   * without a resourceVersion asks v1.34 for a watch list, which this control plane's etcd cannot serve).
   */
  private static SharedIndexInformer<FineTuneJob> recordPhases(String name, Set<Phase> phases) {
    return server.client().resources(FineTuneJob.class).inNamespace(NS).withName(name).inform(new ResourceEventHandler<>() {
      @Override
      public void onAdd(FineTuneJob job) {
        record(job);
      }

      @Override
      public void onUpdate(FineTuneJob old, FineTuneJob job) {
        record(job);
      }

      @Override
      public void onDelete(FineTuneJob job, boolean unknownFinalState) {}

      private void record(FineTuneJob job) {
        if (job.getStatus() != null && job.getStatus().phase != null) {
          phases.add(job.getStatus().phase);
        }
      }
    });
  }

  /**
   * examples/small-cpu.yaml under another name, cut to 4 epochs of 600 records of a narrower model: these tests
   * are about the operator, and the example's full run (which LearnsTest trains) takes minutes more per scenario.
   * Same seeds everywhere, so the same losses and weights as the happy path.
   */
  private static FineTuneJob smallCpu(String name) throws IOException {
    FineTuneJob job = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
    job.getMetadata().setName(name);
    job.getMetadata().setNamespace(NS);
    job.getSpec().model.scratch.embeddingDim = 64;
    job.getSpec().dataset.synthetic.size = 600;
    job.getSpec().training.epochs = 4;
    job.getSpec().training.warmupSteps = 10;
    job.getSpec().earlyStopping.patience = 2;
    job.getSpec().evaluation.maxNewTokens = 24;
    return job;
  }

  private static void createSmallCpu(String name) throws IOException {
    server.client().resource(smallCpu(name)).create();
  }

  private static FineTuneJob awaitTerminal(String name) {
    return watchUntilTerminal(name, new LinkedHashSet<>(), new AtomicReference<>());
  }

  /** Polls status and kubectl get until Succeeded or Failed, collecting the table rows on the way. */
  private static FineTuneJob watchUntilTerminal(String name, Set<String> rows, AtomicReference<Instant> firstEpoch) {
    AtomicReference<FineTuneJob> last = new AtomicReference<>();
    await().atMost(RUN_TIMEOUT).pollInterval(Duration.ofMillis(500)).until(() -> {
      FineTuneJob j = get(name);
      last.set(j);
      if (j != null && j.getStatus() != null && j.getStatus().phase != null) {
        Result table = server.kubectl("get", "ftj", "-n", NS, name, "--no-headers");
        table.output().lines().filter(l -> l.startsWith(name + " ")).forEach(rows::add);
        if (j.getStatus().epoch != null && firstEpoch.get() == null) {
          firstEpoch.set(Instant.now());
        }
        return j.getStatus().phase.isTerminal();
      }
      return false;
    });
    return last.get();
  }

  private static List<Pod> trainerPods(String job) {
    return server.client().pods().inNamespace(NS).withLabel(Names.JOB_LABEL, job).list().getItems();
  }

  private static Path runDir(FineTuneJob job) {
    return node.claimDir(NS, Names.checkpointClaim(job)).resolve(Names.runDir(job));
  }

  static List<EpochRecord> history(Path run) throws IOException {
    List<EpochRecord> out = new ArrayList<>();
    for (String line : Files.readAllLines(run.resolve(TrainerContract.HISTORY_FILE))) {
      out.add(FineTuneJobs.json().readValue(line, EpochRecord.class));
    }
    return out;
  }

  private static String describe(String name) {
    return server.kubectl("describe", "ftj", "-n", NS, name).output();
  }

  private static void timing(String scenario, Duration wall, Duration podCreated, Duration firstEpoch) {
    System.out.printf("E2E-TIMING scenario=%s wall=%.1fs%s%s%n", scenario, wall.toMillis() / 1000.0,
        podCreated == null ? "" : String.format(" applyToPod=%.2fs", podCreated.toMillis() / 1000.0),
        firstEpoch == null ? "" : String.format(" applyToFirstEpochInKubectl=%.1fs", firstEpoch.toMillis() / 1000.0));
  }
}
