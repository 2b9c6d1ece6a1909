package dev.finetune.operator.testing;

import dev.finetune.operator.resources.JobSet;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import io.fabric8.kubernetes.api.model.DeletionPropagation;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Plays the JobSet controller (kubernetes-sigs/jobset v0.9, pkg/controllers/jobset_controller.go) in one namespace,
 * for a control plane that has the JobSet CRD but not its controller, as {@code FakeNode} plays the kubelet. What
 * the operator relies on, as JobSet does it:
 * <ul>
 *   <li>each replicated Job's replicas become Jobs named {@code SET-REPLICATEDJOB-INDEX}, owned by the JobSet, with
 *       the template's labels plus the JobSet's ({@code jobset-name}, {@code replicatedjob-name}, {@code restart-attempt})
 *       on the Job and its Pods, suspended when the JobSet is (and resumed with it);</li>
 *   <li>a failed Job: the first failure-policy rule whose {@code onJobFailureReasons} holds the Job's reason decides
 *       (FailJobSet); otherwise the JobSet restarts (status.restarts + 1; the Jobs of earlier attempts are deleted in the
 *       foreground and made anew) while restarts are below maxRestarts, and fails when they are not;</li>
 *   <li>every Job complete (success policy All): condition Completed; a finished JobSet deletes its running Jobs.</li>
 * </ul>
 */
public final class FakeJobSetController implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(FakeJobSetController.class);
  private static final String RESTARTS_LABEL = "jobset.sigs.k8s.io/restart-attempt";
  private final KubernetesClient client;
  private final String namespace;
  private final ScheduledExecutorService loop = Executors.newSingleThreadScheduledExecutor();

  public FakeJobSetController(KubernetesClient client, String namespace) {
    this.client = client;
    this.namespace = namespace;
    loop.scheduleWithFixedDelay(this::reconcileAll, 0, 200, TimeUnit.MILLISECONDS);
  }

  private void reconcileAll() {
    try {
      client.resources(JobSet.class).inNamespace(namespace).list().getItems().forEach(this::reconcile);
    } catch (RuntimeException e) {
      LOG.debug("fake JobSet controller: {}", e.toString()); // a conflict or a vanished object: the next round
    }
  }

  private void reconcile(JobSet set) {
    if (set.getMetadata().getDeletionTimestamp() != null) {
      return;
    }
    int restarts = set.getStatus() == null || set.getStatus().restarts == null ? 0 : set.getStatus().restarts;
    List<Job> owned = client.batch().v1().jobs().inNamespace(namespace)
        .withLabel(JobSet.NAME_LABEL, set.getMetadata().getName()).list().getItems().stream()
        .filter(j -> j.getMetadata().getOwnerReferences().stream()
            .anyMatch(o -> o.getUid().equals(set.getMetadata().getUid())))
        .toList();
    List<Job> current = new ArrayList<>();
    for (Job job : owned) {
      if (Integer.parseInt(job.getMetadata().getLabels().get(RESTARTS_LABEL)) < restarts) {
        delete(job); // an earlier attempt's
      } else {
        current.add(job);
      }
    }
    if (set.finished()) {
      current.stream().filter(j -> !ended(j)).forEach(this::delete);
      return;
    }
    Optional<Job> failed = current.stream().filter(j -> condition(j, "Failed").isPresent()).findFirst();
    if (failed.isPresent()) {
      String reason = condition(failed.get(), "Failed").map(JobCondition::getReason).orElse("");
      boolean failSet = set.getSpec().failurePolicy != null && set.getSpec().failurePolicy.rules != null
          && set.getSpec().failurePolicy.rules.stream().filter(r -> r.onJobFailureReasons == null
              || r.onJobFailureReasons.isEmpty() || r.onJobFailureReasons.contains(reason))
              .findFirst().map(r -> "FailJobSet".equals(r.action)).orElse(false);
      int max = set.getSpec().failurePolicy == null || set.getSpec().failurePolicy.maxRestarts == null ? 0
          : set.getSpec().failurePolicy.maxRestarts;
      if (failSet) {
        setStatus(set, restarts, "Failed", "FailJobSetFailurePolicyAction", "applying FailJobSet failure policy action");
      } else if (restarts >= max) {
        setStatus(set, restarts, "Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts");
      } else {
        setStatus(set, restarts + 1, null, null, null);
      }
      return;
    }
    int wanted = set.getSpec().replicatedJobs.stream().mapToInt(r -> r.replicas).sum();
    if (current.size() == wanted && current.stream().allMatch(j -> condition(j, "Complete").isPresent())) {
      setStatus(set, restarts, "Completed", "AllJobsCompleted", "jobset completed successfully");
      return;
    }
    boolean suspend = Boolean.TRUE.equals(set.getSpec().suspend);
    for (var rjob : set.getSpec().replicatedJobs) {
      for (int i = 0; i < rjob.replicas; i++) {
        String name = JobSet.childJob(set.getMetadata().getName(), rjob.name, i);
        Optional<Job> job = current.stream().filter(j -> j.getMetadata().getName().equals(name)).findFirst();
        if (job.isEmpty()) {
          if (owned.stream().noneMatch(j -> j.getMetadata().getName().equals(name))) { // the old one is gone
            client.resource(child(set, rjob, i, restarts, suspend)).create();
          }
        } else if (!Boolean.valueOf(suspend).equals(job.get().getSpec().getSuspend()) && !ended(job.get())) {
          client.batch().v1().jobs().inNamespace(namespace).withName(name)
              .edit(j -> new JobBuilder(j).editSpec().withSuspend(suspend).endSpec().build());
        }
      }
    }
  }

  private Job child(JobSet set, JobSet.ReplicatedJob rjob, int index, int restarts, boolean suspend) {
    Map<String, String> labels = new LinkedHashMap<>(rjob.template.getMetadata().getLabels());
    labels.put(JobSet.NAME_LABEL, set.getMetadata().getName());
    labels.put(JobSet.REPLICATED_JOB_LABEL, rjob.name);
    labels.put(RESTARTS_LABEL, Integer.toString(restarts));
    Job job = new JobBuilder()
        .withNewMetadata()
        .withName(JobSet.childJob(set.getMetadata().getName(), rjob.name, index))
        .withNamespace(namespace)
        .withLabels(labels)
        .addNewOwnerReference().withApiVersion(JobSet.GROUP + "/" + JobSet.VERSION).withKind("JobSet")
        .withName(set.getMetadata().getName()).withUid(set.getMetadata().getUid()).withController(true)
        .withBlockOwnerDeletion(true).endOwnerReference()
        .endMetadata()
        .withSpec(rjob.template.getSpec())
        .build();
    job.getSpec().setSuspend(suspend);
    Map<String, String> podLabels = new LinkedHashMap<>(job.getSpec().getTemplate().getMetadata().getLabels());
    podLabels.putAll(Map.of(JobSet.NAME_LABEL, set.getMetadata().getName(), JobSet.REPLICATED_JOB_LABEL, rjob.name,
        RESTARTS_LABEL, Integer.toString(restarts)));
    job.getSpec().getTemplate().getMetadata().setLabels(podLabels);
    return job;
  }

  private void setStatus(JobSet set, int restarts, String type, String reason, String message) {
    JobSet.Status status = set.getStatus() == null ? new JobSet.Status() : set.getStatus();
    status.restarts = restarts;
    if (type != null) {
      List<Condition> conditions = new ArrayList<>(status.conditions == null ? List.of() : status.conditions);
      conditions.add(new ConditionBuilder().withType(type).withStatus("True").withReason(reason).withMessage(message)
          .withLastTransitionTime(Jobs.now()).build());
      status.conditions = conditions;
      status.terminalState = type;
    }
    set.setStatus(status);
    client.resource(set).updateStatus();
  }

  private void delete(Job job) {
    client.resource(job).withPropagationPolicy(DeletionPropagation.FOREGROUND).delete();
  }

  private static boolean ended(Job job) {
    return condition(job, "Complete").isPresent() || condition(job, "Failed").isPresent();
  }

  private static Optional<JobCondition> condition(Job job, String type) {
    return job.getStatus() == null || job.getStatus().getConditions() == null ? Optional.empty()
        : job.getStatus().getConditions().stream()
            .filter(c -> type.equals(c.getType()) && "True".equals(c.getStatus())).findFirst();
  }

  @Override
  public void close() {
    loop.shutdownNow();
  }
}
