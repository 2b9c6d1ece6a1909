package dev.finetune.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.finetune.api.testing.RealKubeApiServer;
import dev.finetune.api.testing.RealKubeApiServer.Result;
import dev.finetune.api.testing.Repo;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.ServiceAccountBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The CRD on a real kube-apiserver: installs, accepts the examples, refuses every broken job (its OpenAPI schema, or
 * its CEL rules in the shared validator's words), refuses spec changes once the training Job exists, prints the
 * columns.
 */
class RealApiServerTest {
  private static RealKubeApiServer server;

  @BeforeAll
  static void start() {
    server = RealKubeApiServer.start(false);
    server.installCrd();
  }

  @AfterAll
  static void stop() {
    if (server != null) {
      server.close();
    }
  }

  @Test
  void examplesAreAccepted() throws Exception {
    for (Path example : ExamplesTest.examples()) {
      Result r = server.kubectl("apply", "-f", example.toString());
      assertThat(r.exitCode()).as(example + ": " + r.output()).isZero();
    }
    // The server fills in the CRD's defaults for fields a short job leaves out.
    assertThat(server.kubectl("get", "ftj", "small-cpu", "-o", "jsonpath={.spec.training.seed} {.spec.dataset.split.train}").output())
        .isEqualTo("123 0.85");
  }

  @Test
  void everyBrokenJobIsRefused() throws Exception {
    List<BrokenJobsTest.Broken> broken = BrokenJobsTest.brokenJobs();
    for (BrokenJobsTest.Broken b : broken) {
      Result r = server.kubectl("apply", "-f", b.file().toString());
      assertThat(r.exitCode()).as(b + " must be refused: " + r.output()).isNotZero();
      if (b.schemaRejects()) {
        String field = b.expect().substring(0, b.expect().indexOf(':'));
        assertThat(r.output()).as(b.toString()).contains(field.substring(field.lastIndexOf('.') + 1));
      } else {
        // A CEL rule: the field and the fix, in the validator's words (numbers as CEL prints them).
        assertThat(r.output()).as(b.toString()).contains(b.server());
      }
    }
  }

  /** The server fills in the hub token's key (token), as the Java default does for the mock server and local runs. */
  @Test
  void aHubTokenSecretsKeyDefaultsToToken() throws Exception {
    FineTuneJob job = FineTuneJobs.read(Repo.examples().resolve("job.yaml"));
    job.getMetadata().setName("gated");
    job.getMetadata().setNamespace("default");
    job.getSpec().model.hubTokenSecret = new ModelSpec.HubTokenSecret();
    job.getSpec().model.hubTokenSecret.name = "hf-token";
    job.getSpec().model.hubTokenSecret.key = null;
    job.getSpec().model.cacheClaim = "hub-cache";
    server.client().resource(job).create();
    assertThat(server.kubectl("get", "ftj", "gated", "-o",
        "jsonpath={.spec.model.hubTokenSecret.name} {.spec.model.hubTokenSecret.key} {.spec.model.cacheClaim}").output())
        .isEqualTo("hf-token token hub-cache");
  }

  /**
   * The results outlive the job unless it says otherwise: the server fills in retainClaim true for a job that names no
   * checkpoints and for one that names some of them, and keeps an explicit false.
   */
  @Test
  void theCheckpointClaimIsKeptUnlessTheJobSaysOtherwise() throws Exception {
    FineTuneJob job = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
    job.getMetadata().setNamespace("default");
    job.getMetadata().setName("keeps-by-default");
    job.getSpec().checkpoints = null;
    server.client().resource(job).create();
    job.getMetadata().setName("keeps-too");
    job.getSpec().checkpoints = new CheckpointSpec();
    job.getSpec().checkpoints.retainClaim = null; // not sent: the server's default applies
    server.client().resource(job).create();
    job.getMetadata().setName("deletes");
    job.getSpec().checkpoints.retainClaim = false;
    server.client().resource(job).create();
    for (String name : List.of("keeps-by-default", "keeps-too", "deletes")) {
      assertThat(server.kubectl("get", "ftj", name, "-o", "jsonpath={.spec.checkpoints.retainClaim}").output())
          .as(name).isEqualTo(name.startsWith("keeps") ? "true" : "false");
    }
  }

  /**
   * examples/results-pod.yaml (README "Getting the results") passes the restricted Pod Security Standard, enforced by
   * this API server's PodSecurity admission in a namespace labelled for it; a Pod that runs as root does not.
   */
  @Test
  void theResultsPodPassesTheRestrictedPodSecurityStandard() throws Exception {
    String ns = "restricted";
    server.client().namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(ns)
        .addToLabels("pod-security.kubernetes.io/enforce", "restricted").endMetadata().build()).create();
    // what kube-controller-manager would make in a new namespace (this server runs without it)
    server.client().serviceAccounts().inNamespace(ns).resource(new ServiceAccountBuilder()
        .withNewMetadata().withName("default").endMetadata().build()).create();
    Result accepted = server.kubectl("apply", "--dry-run=server", "-n", ns, "-f", ExamplesTest.resultsPod().toString());
    assertThat(accepted.exitCode()).as(accepted.output()).isZero();
    assertThat(accepted.output()).doesNotContain("Warning");

    Path root = Files.createTempFile("results-as-root", ".yaml");
    Files.writeString(root, Files.readString(ExamplesTest.resultsPod()).replace("runAsNonRoot: true", "runAsNonRoot: false"));
    Result refused = server.kubectl("apply", "--dry-run=server", "-n", ns, "-f", root.toString());
    assertThat(refused.exitCode()).as("PodSecurity admission is on: " + refused.output()).isNotZero();
    assertThat(refused.output()).contains("violates PodSecurity \"restricted:latest\"", "runAsNonRoot");
  }

  /** Once the operator has made the training Job (status.jobName), only spec.suspend may change. */
  @Test
  void specChangesAreRefusedOnceTheTrainingJobExists() throws Exception {
    FineTuneJob job = FineTuneJobs.read(Repo.examples().resolve("small-cpu.yaml"));
    job.getMetadata().setName("immutable");
    job.getMetadata().setNamespace("default");
    server.client().resource(job).create();
    // Before the Job exists the spec may change (e.g. fixing a spec the operator marked InvalidSpec).
    Result before = server.kubectl("patch", "ftj", "immutable", "--type", "merge", "-p", "{\"spec\":{\"training\":{\"epochs\":5}}}");
    assertThat(before.exitCode()).as(before.output()).isZero();

    Result status = server.kubectl("patch", "ftj", "immutable", "--subresource", "status", "--type", "merge",
        "-p", "{\"status\":{\"phase\":\"Pending\",\"jobName\":\"immutable-train\"}}");
    assertThat(status.exitCode()).as(status.output()).isZero();
    for (String change : List.of("{\"spec\":{\"training\":{\"epochs\":6}}}", "{\"spec\":{\"image\":\"trainer:2\"}}",
        "{\"spec\":{\"earlyStopping\":{\"patience\":7}}}",
        "{\"spec\":{\"priorityClassName\":\"high\"}}", "{\"spec\":{\"resources\":null}}")) {
      Result refused = server.kubectl("patch", "ftj", "immutable", "--type", "merge", "-p", change);
      assertThat(refused.exitCode()).as(change + ": " + refused.output()).isNotZero();
      assertThat(refused.output()).contains("spec: Forbidden: changed after training Job immutable-train was created;"
          + " only spec.suspend can change because a Job's Pod template is immutable. Delete and re-create the"
          + " FineTuneJob to change anything else. Its claim is kept (spec.checkpoints.retainClaim, the default) and"
          + " a re-created job of the same name continues its run there: for other model, data or training settings,"
          + " use another name or spec.checkpoints.path.");
    }
    Result suspend = server.kubectl("patch", "ftj", "immutable", "--type", "merge", "-p", "{\"spec\":{\"suspend\":true}}");
    assertThat(suspend.exitCode()).as(suspend.output()).isZero();
    Result labels = server.kubectl("label", "ftj", "immutable", "team=ml");
    assertThat(labels.exitCode()).as(labels.output()).isZero();
    assertThat(server.kubectl("get", "ftj", "immutable", "-o", "jsonpath={.spec.training.epochs} {.spec.suspend}").output())
        .isEqualTo("5 true");
  }

  @Test
  void kubectlGetShowsTrainingProgress() {
    Result created = server.kubectl("apply", "-f", Repo.examples().resolve("small-cpu.yaml").toString());
    assertThat(created.exitCode()).as(created.output()).isZero();
    FineTuneJob job = server.client().resources(FineTuneJob.class).inNamespace("default").withName("small-cpu").get();
    FineTuneJobStatus status = new FineTuneJobStatus();
    status.phase = FineTuneJobStatus.Phase.Running;
    status.epoch = 2;
    status.epochs = 4;
    status.progress = "2/4";
    status.trainLoss = 1.2345;
    status.validationLoss = 1.5;
    status.bestValidationLoss = 1.4;
    job.setStatus(status);
    server.client().resource(job).updateStatus();

    Result table = server.kubectl("get", "ftj", "small-cpu");
    assertThat(table.exitCode()).as(table.output()).isZero();
    List<String> lines = table.output().lines().filter(l -> !l.startsWith("W") && !l.isBlank()).toList();
    assertThat(lines.get(0).split("\\s+")).containsExactly("NAME", "PHASE", "EPOCH", "TRAIN-LOSS", "VAL-LOSS", "BEST", "AGE");
    assertThat(lines.get(1).split("\\s+")).startsWith("small-cpu", "Running", "2/4", "1.2345", "1.5", "1.4");
    // kubectl's short name works too.
    assertThat(server.kubectl("get", "ftj", "-o", "name").output()).contains("finetunejob.finetune.dev/small-cpu");
  }
}
