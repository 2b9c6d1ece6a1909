package dev.finetune.operator.reconciler;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.observer.Conditions;
import dev.finetune.operator.observer.JobObserver;
import dev.finetune.operator.observer.Snapshot;
import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.resources.TrainerResources;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes the cluster follow a FineTuneJob: creates (or adopts after a lost reply) the checkpoint claim, the
 * ConfigMap with the job file and the training Job (with several nodes also the workers' Job and the rendezvous
 * Service, or, where the operator uses JobSets, one JobSet and the Service); applies changes of spec.suspend to the
 * Jobs or the JobSet; suspends the rest of a job with several nodes once one part
 * has ended; hands a finished Job to the TTL controller once its end is recorded. What it did, or why it could not, goes into the status it is
 * given.
 */
public class JobDeployer {
  private static final Logger LOG = LoggerFactory.getLogger(JobDeployer.class);
  private final TrainerResources resources;
  private final boolean jobSets;

  /**
   * @param jobSets whether a job with several nodes runs as a JobSet
   */
  public JobDeployer(OperatorConfig config, boolean jobSets) {
    this.resources = new TrainerResources(config);
    this.jobSets = jobSets;
  }

  /**
   * Creates what the job needs. The status then shows the new Job as observed, or says why the job failed:
   * NameConflict (an object under a needed name belongs to someone else) or Rejected (the API server refused an
   * object as invalid).
   */
  public void create(FineTuneJob ftj, FineTuneJobStatus st, Context<FineTuneJob> ctx) {
    Long generation = ftj.getMetadata().getGeneration();
    try {
      Snapshot made = createAll(ftj, ctx);
      st.restarts = 0;
      JobObserver.observe(ftj, st, made); // the status the next reconciliation would see
      LOG.info("msg=\"created\" namespace={} name={} job={}", ftj.getMetadata().getNamespace(),
          ftj.getMetadata().getName(), st.jobName);
    } catch (NameConflict e) {
      Conditions.fail(st, "NameConflict", e.getMessage(), generation);
    } catch (KubernetesClientException e) {
      if (e.getCode() != 422) {
        throw e; // retried by the framework, which reports it in condition Ready
      }
      Conditions.fail(st, "Rejected", "the API server rejected an object the job needs (check spec.labels,"
          + " nodeSelector, tolerations, affinity and names): " + serverMessage(e), generation);
    }
  }

  /** Applies a change of spec.suspend, to the workers' Job too; to a JobSet, whose controller suspends its Jobs. */
  public void align(FineTuneJob ftj, Snapshot seen, Context<FineTuneJob> ctx) {
    if (seen.jobSet().isPresent()) {
      JobSet set = seen.jobSet().get();
      suspendOrResume(ftj, set, set.getSpec().suspend, set.finished(), ctx);
      return;
    }
    seen.job().ifPresent(job -> suspendOrResume(ftj, job, job.getSpec().getSuspend(), JobObserver.ended(job), ctx));
    seen.workers().ifPresent(job -> suspendOrResume(ftj, job, job.getSpec().getSuspend(), JobObserver.ended(job), ctx));
  }

  /**
   * Once a job with several nodes has ended, suspends its Job that is still running: the workers' when the leader
   * ended (a rank that stays alone would wait for the others until its timeout), the leader's when the workers' Job
   * gave up. The Job controller stops their Pods (SIGTERM, so the leader checkpoints); the recorded status is final.
   * Suspending, not deleting: the operator deletes nothing, and the Job stays to be read.
   */
  public void stopTheRest(FineTuneJob ftj, FineTuneJobStatus recorded, Context<FineTuneJob> ctx) {
    if (Names.nodes(ftj) == 1 || recorded.phase == null || !recorded.phase.isTerminal()) {
      return;
    }
    ctx.getSecondaryResources(Job.class).stream()
        .filter(j -> Set.of(Names.job(ftj), Names.workersJob(ftj)).contains(j.getMetadata().getName()))
        .filter(j -> !JobObserver.ended(j) && !Boolean.TRUE.equals(j.getSpec().getSuspend()))
        .forEach(j -> {
          LOG.info("msg=\"suspending the rest\" namespace={} name={} job={}", ftj.getMetadata().getNamespace(),
              ftj.getMetadata().getName(), j.getMetadata().getName());
          ctx.getClient().batch().v1().jobs().inNamespace(j.getMetadata().getNamespace())
              .withName(j.getMetadata().getName())
              .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"metadata\":{\"annotations\":{\""
                  + Names.SUSPEND_ANNOTATION + "\":\"true\"}},\"spec\":{\"suspend\":true}}");
        });
  }

  /**
   * Sets spec.ttlSecondsAfterFinished on the finished Job once the FineTuneJob's status records its end. The Job is
   * made without it, so the TTL controller cannot delete a Job (and its Pods with the trainer's summary) whose end
   * the operator has not seen yet, say while it restarts.
   */
  public void expireWhenRecorded(FineTuneJob ftj, FineTuneJobStatus recorded, Context<FineTuneJob> ctx) {
    Integer ttl = ftj.getSpec().ttlSecondsAfterFinished;
    if (ttl == null || recorded.phase == null || !recorded.phase.isTerminal() || recorded.jobName == null) {
      return;
    }
    if (jobSets) {
      ctx.getSecondaryResources(JobSet.class).stream()
          .filter(s -> recorded.jobName.equals(s.getMetadata().getName()) && s.getSpec().ttlSecondsAfterFinished == null
              && s.finished())
          .forEach(s -> ctx.getClient().resource(s)
              .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"ttlSecondsAfterFinished\":" + ttl + "}}"));
    }
    Set<String> ours = Set.of(recorded.jobName, Names.workersJob(ftj));
    ctx.getSecondaryResources(Job.class).stream()
        .filter(j -> ours.contains(j.getMetadata().getName()) && j.getSpec().getTtlSecondsAfterFinished() == null
            && JobObserver.ended(j))
        .forEach(j -> ctx.getClient().batch().v1().jobs().inNamespace(j.getMetadata().getNamespace())
            .withName(j.getMetadata().getName())
            .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"ttlSecondsAfterFinished\":" + ttl + "}}"));
  }

  /** "code message" of the API server's answer. */
  public static String serverMessage(KubernetesClientException e) {
    return e.getStatus() != null && e.getStatus().getMessage() != null
        ? e.getCode() + " " + e.getStatus().getMessage() : e.getMessage();
  }

  /** Creates what is missing, the Job or JobSet that runs the trainers last (the status follows it). */
  private Snapshot createAll(FineTuneJob ftj, Context<FineTuneJob> ctx) {
    KubernetesClient client = ctx.getClient();
    if (Names.createsClaim(ftj) && ctx.getSecondaryResources(PersistentVolumeClaim.class).stream()
        .noneMatch(c -> Names.claim(ftj).equals(c.getMetadata().getName()))) {
      createOrGet(client, ftj, resources.claim(ftj));
    }
    ConfigMap spec = resources.specConfigMap(ftj);
    Optional<ConfigMap> existing = ctx.getSecondaryResources(ConfigMap.class).stream()
        .filter(c -> Names.configMap(ftj).equals(c.getMetadata().getName())).findFirst();
    if (existing.isEmpty()) {
      createOrGet(client, ftj, spec);
    } else if (!Objects.equals(existing.get().getData(), spec.getData())) {
      // left from an attempt the API server rejected; no Job uses it yet, so it follows the spec
      client.configMaps().inNamespace(ftj.getMetadata().getNamespace()).withName(Names.configMap(ftj)).edit(c -> {
        c.setData(spec.getData());
        return c;
      });
    }
    if (Names.nodes(ftj) > 1) {
      createOrGet(client, ftj, resources.rendezvousService(ftj));
      if (jobSets) {
        return Snapshot.of(createOrGet(client, ftj, resources.jobSet(ftj)));
      }
      createOrGet(client, ftj, resources.workersJob(ftj)); // the leader comes last: its Job is what the status follows
    }
    return Snapshot.of(createOrGet(client, ftj, resources.job(ftj)));
  }

  /** An object with the name the operator needs exists and belongs to someone else. */
  static final class NameConflict extends RuntimeException {
    NameConflict(String message) {
      super(message);
    }
  }

  /** Creates the object; if it exists already (a retry after a lost reply), it must be this job's. */
  private static <T extends HasMetadata> T createOrGet(KubernetesClient client, FineTuneJob ftj, T resource) {
    try {
      return client.resource(resource).create();
    } catch (KubernetesClientException e) {
      T existing = e.getCode() == 409 ? client.resource(resource).get() : null;
      if (existing == null) {
        throw e;
      }
      if (!ours(ftj, existing)) {
        throw new NameConflict(existing.getKind() + " " + existing.getMetadata().getName()
            + " already exists and is not owned by this FineTuneJob; delete or rename it, or rename the job");
      }
      return existing;
    }
  }

  /** Owned by this FineTuneJob, or labelled for it without an owner (a retained claim). */
  private static boolean ours(FineTuneJob ftj, HasMetadata existing) {
    var meta = existing.getMetadata();
    boolean owned = meta.getOwnerReferences() != null && meta.getOwnerReferences().stream()
        .anyMatch(o -> Objects.equals(o.getUid(), ftj.getMetadata().getUid()));
    boolean labelled = meta.getLabels() != null
        && ftj.getMetadata().getName().equals(meta.getLabels().get(Names.JOB_LABEL));
    return owned || labelled && meta.getOwnerReferences().isEmpty();
  }

  /**
   * Only a change of spec.suspend is applied (the last applied value is an annotation on the Job or JobSet): one that a
   * queue controller such as Kueue holds suspended until admission is left alone.
   */
  private static void suspendOrResume(FineTuneJob ftj, HasMetadata run, Boolean suspended, boolean ended,
      Context<FineTuneJob> ctx) {
    boolean want = Boolean.TRUE.equals(ftj.getSpec().suspend);
    String applied = run.getMetadata().getAnnotations() == null ? null
        : run.getMetadata().getAnnotations().get(Names.SUSPEND_ANNOTATION);
    boolean appliedWant = applied == null ? Boolean.TRUE.equals(suspended) : Boolean.parseBoolean(applied);
    if (want == appliedWant || ended) {
      return;
    }
    ctx.getClient().resource(run)
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"metadata\":{\"annotations\":{\"" + Names.SUSPEND_ANNOTATION
            + "\":\"" + want + "\"}},\"spec\":{\"suspend\":" + want + "}}");
  }
}
