package dev.finetune.operator.reconciler;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.api.validation.FineTuneJobValidator;
import dev.finetune.api.validation.Problem;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.metrics.OperatorMetrics;
import dev.finetune.operator.observer.ProgressClient;
import dev.finetune.operator.observer.ProgressEventSource;
import dev.finetune.operator.observer.TerminationMessages;
import dev.finetune.operator.observer.TerminationMessages.Termination;
import dev.finetune.operator.observer.TrainerStatus;
import dev.finetune.operator.resources.Names;
import dev.finetune.operator.resources.SpecHash;
import dev.finetune.operator.resources.TrainerResources;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.javaoperatorsdk.operator.api.config.informer.InformerEventSourceConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.ErrorStatusUpdateControl;
import io.javaoperatorsdk.operator.api.reconciler.EventSourceContext;
import io.javaoperatorsdk.operator.api.reconciler.PrimaryUpdateAndCacheUtils;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.EventSource;
import io.javaoperatorsdk.operator.processing.event.source.SecondaryToPrimaryMapper;
import io.javaoperatorsdk.operator.processing.event.source.informer.InformerEventSource;
import java.io.IOException;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns a FineTuneJob into a checkpoint claim, a ConfigMap with the job file and a training Job, and mirrors the
 * Job, its Pod and the trainer's progress into the FineTuneJob's status.
 *
 * <p>Reads come from informer caches (Jobs, Pods, ConfigMaps and claims labelled as managed by this operator),
 * so an idle operator makes no API calls. Running trainers are polled at a steady interval by the
 * {@link ProgressEventSource}, off the reconciler's threads; a job is reconciled when its progress changed.
 * Succeeded and Failed are final: after them nothing is created or changed.
 */
@ControllerConfiguration(name = FineTuneJobReconciler.NAME)
public class FineTuneJobReconciler implements Reconciler<FineTuneJob> {
  public static final String NAME = "finetunejob";
  private static final Logger LOG = LoggerFactory.getLogger(FineTuneJobReconciler.class);
  /** At most this many EpochFinished events per reconciliation (e.g. after the operator was down a while). */
  private static final int MAX_EPOCH_EVENTS = 10;

  private final OperatorConfig config;
  private final TrainerResources resources;
  private final ProgressClient progress;
  private final OperatorMetrics metrics;
  private final EventRecorder events;
  private volatile ProgressEventSource progressSource;

  public FineTuneJobReconciler(OperatorConfig config, KubernetesClient client, OperatorMetrics metrics) {
    this(config, new ProgressClient(config.progressTimeout()), metrics, new EventRecorder(client, config.identity()));
  }

  public FineTuneJobReconciler(OperatorConfig config, ProgressClient progress, OperatorMetrics metrics,
      EventRecorder events) {
    this.config = config;
    this.resources = new TrainerResources(config);
    this.progress = progress;
    this.metrics = metrics;
    this.events = events;
  }

  @Override
  public List<EventSource<?, FineTuneJob>> prepareEventSources(EventSourceContext<FineTuneJob> context) {
    metrics.jobsFrom(() -> context.getPrimaryCache().list());
    progressSource = new ProgressEventSource(progress, config.progressInterval(), context::getPrimaryCache);
    return List.of(
        progressSource,
        informer(context, Job.class, "jobs"),
        informer(context, Pod.class, "pods"),
        informer(context, ConfigMap.class, "configmaps"),
        informer(context, PersistentVolumeClaim.class, "claims"));
  }

  private static <R extends HasMetadata> InformerEventSource<R, FineTuneJob> informer(
      EventSourceContext<FineTuneJob> context, Class<R> type, String name) {
    SecondaryToPrimaryMapper<R> byLabel = r -> {
      String owner = r.getMetadata().getLabels() == null ? null : r.getMetadata().getLabels().get(Names.JOB_LABEL);
      return owner == null ? Set.of() : Set.of(new ResourceID(owner, r.getMetadata().getNamespace()));
    };
    return new InformerEventSource<>(InformerEventSourceConfiguration.from(type, FineTuneJob.class)
        .withName(name)
        .withLabelSelector(Names.MANAGED_SELECTOR)
        .withSecondaryToPrimaryMapper(byLabel)
        .withNamespacesInheritedFromController()
        .build(), context);
  }

  @Override
  public UpdateControl<FineTuneJob> reconcile(FineTuneJob ftj, Context<FineTuneJob> ctx) throws IOException {
    FineTuneJobStatus old = ftj.getStatus() == null ? new FineTuneJobStatus() : ftj.getStatus();
    String before = FineTuneJobs.toJson(old);
    FineTuneJobStatus st = FineTuneJobs.json().readValue(before, FineTuneJobStatus.class);
    Long generation = ftj.getMetadata().getGeneration();

    if (old.phase != null && old.phase.isTerminal()) {
      // a job refused before any Job existed (by the validator or the API server) starts when its spec is fixed
      boolean fixedInvalidSpec = Set.of("InvalidSpec", "Rejected", "NameConflict").contains(old.reason) && old.jobName == null
          && !Objects.equals(generation, old.observedGeneration);
      if (!fixedInvalidSpec) {
        return UpdateControl.noUpdate(); // final: nothing is re-created or changed
      }
      st = new FineTuneJobStatus();
    }

    Optional<Job> job = ctx.getSecondaryResources(Job.class).stream()
        .filter(j -> Names.job(ftj).equals(j.getMetadata().getName())).findFirst();
    if (job.isEmpty() && st.jobName != null) {
      // made before but not in the cache: ask the server before concluding it is gone
      job = Optional.ofNullable(ctx.getClient().batch().v1().jobs()
          .inNamespace(ftj.getMetadata().getNamespace()).withName(st.jobName).get());
      if (job.isEmpty()) {
        jobDeleted(ftj, st, generation);
      }
    } else if (job.isEmpty()) {
      List<Problem> problems = FineTuneJobValidator.validate(ftj);
      if (!problems.isEmpty()) {
        invalid(ftj, old, st, problems, generation);
      } else {
        job = Optional.ofNullable(create(ftj, st, ctx, generation));
      }
    }
    if (job.isPresent() && (st.phase == null || !st.phase.isTerminal())) {
      observe(ftj, job.get(), old, st, ctx, generation);
    }
    st.observedGeneration = generation;
    st.progress = TrainerStatus.progress(st);
    Conditions.clear(st, Conditions.READY, "Reconciled", "the last reconciliation succeeded", generation);

    if (!FineTuneJobs.toJson(st).equals(before)) {
      writeStatus(ftj, st, ctx);
    }
    return UpdateControl.noUpdate();
  }

  /**
   * A reconciliation failed (API server unreachable, forbidden, conflict...): the framework retries with back-off;
   * the user sees condition Ready=False with the error, and one Warning Event per distinct error.
   */
  @Override
  public ErrorStatusUpdateControl<FineTuneJob> updateErrorStatus(FineTuneJob ftj, Context<FineTuneJob> ctx,
      Exception e) {
    metrics.reconcileFailed();
    FineTuneJobStatus st = ftj.getStatus() == null ? new FineTuneJobStatus() : ftj.getStatus();
    if (st.phase != null && st.phase.isTerminal()) {
      return ErrorStatusUpdateControl.defaultErrorProcessing();
    }
    String message = "reconciliation failed, retrying: "
        + (e instanceof KubernetesClientException k ? serverMessage(k) : String.valueOf(e.getMessage()));
    if (message.length() > 1000) {
      message = message.substring(0, 997) + "...";
    }
    String msg = message;
    boolean same = Conditions.find(st, Conditions.READY)
        .map(c -> "ReconcileError".equals(c.getReason()) && msg.equals(c.getMessage())).orElse(false);
    LOG.warn("msg=\"reconcile failed\" namespace={} name={} error=\"{}\"", ftj.getMetadata().getNamespace(),
        ftj.getMetadata().getName(), msg.replace("\"", "'"));
    if (same) {
      return ErrorStatusUpdateControl.defaultErrorProcessing();
    }
    Conditions.set(st, Conditions.READY, false, "ReconcileError", msg, ftj.getMetadata().getGeneration());
    events.warning(ftj, "ReconcileError", msg);
    ftj.setStatus(st);
    return ErrorStatusUpdateControl.patchStatus(ftj);
  }

  private static String serverMessage(KubernetesClientException e) {
    return e.getStatus() != null && e.getStatus().getMessage() != null
        ? e.getCode() + " " + e.getStatus().getMessage() : e.getMessage();
  }

  /**
   * Patches the status and puts the result into the controller's cache, so that the next reconciliation (often
   * triggered at once by a Job or Pod event) sees this status and does not record the same Events again.
   */
  private void writeStatus(FineTuneJob ftj, FineTuneJobStatus st, Context<FineTuneJob> ctx) {
    if (config.serverSideApply()) {
      FineTuneJob fresh = new FineTuneJob();
      fresh.setMetadata(new ObjectMetaBuilder().withName(ftj.getMetadata().getName())
          .withNamespace(ftj.getMetadata().getNamespace()).build());
      fresh.setSpec(null);
      fresh.setStatus(st);
      PrimaryUpdateAndCacheUtils.ssaPatchStatusAndCacheResource(ftj, fresh, ctx);
    } else {
      PrimaryUpdateAndCacheUtils.patchStatusAndCacheResource(ftj, ctx, p -> {
        p.setStatus(st);
        return p;
      });
    }
  }

  private void invalid(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st, List<Problem> problems,
      Long generation) {
    String message = problems.stream().map(Problem::toString).collect(Collectors.joining("; "));
    st.phase = Phase.Failed;
    st.reason = "InvalidSpec";
    st.message = message;
    st.completionTime = now();
    Conditions.set(st, Conditions.FAILED, true, "InvalidSpec", message, generation);
    if (!("InvalidSpec".equals(old.reason) && message.equals(old.message))) {
      events.warning(ftj, "InvalidSpec", "The spec is not valid, no training Job was created: " + message);
    }
    LOG.info("msg=\"invalid spec\" namespace={} name={} problems={}", ftj.getMetadata().getNamespace(),
        ftj.getMetadata().getName(), problems.size());
  }

  private void jobDeleted(FineTuneJob ftj, FineTuneJobStatus st, Long generation) {
    String message = "the training Job " + st.jobName + " was deleted before it finished; it is not re-created."
        + " Create the FineTuneJob again to train again (it resumes from the checkpoints on its volume).";
    progressSource.unwatch(ResourceID.fromResource(ftj));
    st.phase = Phase.Failed;
    st.reason = "JobDeleted";
    st.message = message;
    st.completionTime = now();
    Conditions.set(st, Conditions.RUNNING, false, "JobDeleted", message, generation);
    Conditions.set(st, Conditions.FAILED, true, "JobDeleted", message, generation);
    events.warning(ftj, "Failed", message);
  }

  /** Creates the claim, ConfigMap and Job; null (and phase Failed) when the API server rejects one as invalid. */
  private Job create(FineTuneJob ftj, FineTuneJobStatus st, Context<FineTuneJob> ctx, Long generation) {
    try {
      return createAll(ftj, st, ctx, generation);
    } catch (NameConflict e) {
      st.phase = Phase.Failed;
      st.reason = "NameConflict";
      st.message = e.getMessage();
      st.completionTime = now();
      Conditions.set(st, Conditions.FAILED, true, "NameConflict", e.getMessage(), generation);
      events.warning(ftj, "Failed", "Training failed (NameConflict): " + e.getMessage());
      return null;
    } catch (KubernetesClientException e) {
      if (e.getCode() != 422) {
        throw e; // retried by the framework; updateErrorStatus reports it
      }
      String message = "the API server rejected an object the job needs (check spec.labels, nodeSelector,"
          + " tolerations, affinity and names): " + serverMessage(e);
      st.phase = Phase.Failed;
      st.reason = "Rejected";
      st.message = message;
      st.completionTime = now();
      Conditions.set(st, Conditions.FAILED, true, "Rejected", message, generation);
      events.warning(ftj, "Failed", "Training failed (Rejected): " + message);
      return null;
    }
  }

  private Job createAll(FineTuneJob ftj, FineTuneJobStatus st, Context<FineTuneJob> ctx, Long generation) {
    KubernetesClient client = ctx.getClient();
    String ns = ftj.getMetadata().getNamespace();
    StringBuilder made = new StringBuilder();
    if (Names.createsClaim(ftj) && ctx.getSecondaryResources(PersistentVolumeClaim.class).stream()
        .noneMatch(c -> Names.claim(ftj).equals(c.getMetadata().getName()))) {
      createOrGet(client, ftj, resources.claim(ftj));
      made.append(", PersistentVolumeClaim ").append(Names.claim(ftj));
    }
    ConfigMap spec = resources.specConfigMap(ftj);
    Optional<ConfigMap> existing = ctx.getSecondaryResources(ConfigMap.class).stream()
        .filter(c -> Names.configMap(ftj).equals(c.getMetadata().getName())).findFirst();
    if (existing.isEmpty()) {
      createOrGet(client, ftj, spec);
      made.append(", ConfigMap ").append(Names.configMap(ftj));
    } else if (!Objects.equals(existing.get().getData(), spec.getData())) {
      // left from an attempt the API server rejected; no Job uses it yet, so it follows the spec
      client.configMaps().inNamespace(ns).withName(Names.configMap(ftj)).edit(c -> {
        c.setData(spec.getData());
        return c;
      });
    }
    Job job = createOrGet(client, ftj, resources.job(ftj));
    boolean suspended = Boolean.TRUE.equals(ftj.getSpec().suspend);
    st.jobName = job.getMetadata().getName();
    st.phase = suspended ? Phase.Suspended : Phase.Pending;
    st.reason = suspended ? "Suspended" : "Created";
    st.message = suspended ? "the training Job is suspended" : "waiting for the trainer Pod to start";
    st.epochs = ftj.getSpec().training == null ? null : ftj.getSpec().training.epochs;
    st.restarts = 0;
    events.normal(ftj, "Created", "Created training Job " + st.jobName + made
        + (suspended ? " (suspended)" : ""));
    LOG.info("msg=\"created\" namespace={} name={} job={}", ns, ftj.getMetadata().getName(), st.jobName);
    return job;
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
      if (e.getCode() == 409) {
        T existing = client.resource(resource).get();
        if (existing != null) {
          boolean ours = existing.getMetadata().getOwnerReferences() != null && existing.getMetadata()
              .getOwnerReferences().stream().anyMatch(o -> Objects.equals(o.getUid(), ftj.getMetadata().getUid()))
              || existing.getMetadata().getLabels() != null && ftj.getMetadata().getName().equals(
                  existing.getMetadata().getLabels().get(Names.JOB_LABEL)) && existing.getMetadata().getOwnerReferences()
                  .isEmpty();
          if (!ours) {
            throw new NameConflict(existing.getKind() + " " + existing.getMetadata().getName()
                + " already exists and is not owned by this FineTuneJob; delete or rename it, or rename the job");
          }
          return existing;
        }
      }
      throw e;
    }
  }

  /** Follows the Job and its Pods; while the trainer runs, its progress comes from the {@link ProgressEventSource}. */
  private void observe(FineTuneJob ftj, Job job, FineTuneJobStatus old, FineTuneJobStatus st,
      Context<FineTuneJob> ctx, Long generation) {
    String ns = ftj.getMetadata().getNamespace();
    st.jobName = job.getMetadata().getName();
    checkSpecChange(ftj, job, old, st, generation);
    job = suspendOrResume(ftj, job, st, ctx, generation);

    String jobUid = job.getMetadata().getUid();
    List<Pod> pods = ctx.getSecondaryResources(Pod.class).stream()
        .filter(p -> p.getMetadata().getOwnerReferences() != null && p.getMetadata().getOwnerReferences().stream()
            .anyMatch(o -> Objects.equals(o.getUid(), jobUid)))
        .sorted(Comparator.comparing((Pod p) -> Objects.toString(p.getMetadata().getCreationTimestamp(), ""))
            .thenComparing(p -> p.getMetadata().getName()))
        .toList();
    Optional<Pod> running = pods.stream()
        .filter(p -> p.getStatus() != null && "Running".equals(p.getStatus().getPhase()))
        .reduce((a, b) -> b);

    int previousRestarts = st.restarts == null ? 0 : st.restarts;
    var js = job.getStatus();
    int byJob = js == null ? 0 : nz(js.getFailed()) + nz(js.getSucceeded()) + nz(js.getActive());
    int restarts = Math.max(previousRestarts, Math.max(pods.size(), byJob) - 1);
    if (restarts > previousRestarts) {
      st.restarts = restarts;
      metrics.restarted(restarts - previousRestarts);
      String why = pods.stream().filter(p -> p.getStatus() != null && "Failed".equals(p.getStatus().getPhase()))
          .reduce((a, b) -> b).flatMap(TerminationMessages::of)
          .map(t -> " after Pod " + t.podName() + " exited with code " + t.exitCode() + summaryText(t))
          .orElse("");
      events.warning(ftj, "Restarted", "Trainer restarted (" + restarts + " of at most "
          + ftj.getSpec().backoffLimit + ")" + why + "; it resumes from the latest checkpoint");
    } else if (st.restarts == null) {
      st.restarts = previousRestarts;
    }

    Phase phase;
    if (jobCondition(job, "Complete")) {
      phase = Phase.Succeeded;
    } else if (jobCondition(job, "Failed")) {
      phase = Phase.Failed;
    } else if (Boolean.TRUE.equals(job.getSpec().getSuspend()) && Boolean.TRUE.equals(ftj.getSpec().suspend)) {
      phase = Phase.Suspended;
    } else if (running.isPresent() || finishing(pods)) {
      phase = Phase.Running;
    } else {
      phase = Phase.Pending;
    }
    if (!phase.isTerminal() && badJobExit(pods)) {
      // The podFailurePolicy fails the Job at once, but clusters before 1.26 drop it and would retry bad input.
      stopRetries(ctx, job);
      phase = Phase.Failed;
    }

    ResourceID id = ResourceID.fromResource(ftj);
    if (phase != Phase.Running || running.isEmpty()) {
      progressSource.unwatch(id);
    }
    switch (phase) {
      case Pending -> {
        st.phase = Phase.Pending;
        if (Boolean.TRUE.equals(job.getSpec().getSuspend())) {
          st.reason = "Queued";
          st.message = "the training Job is held suspended by its queue (e.g. Kueue) until it is admitted";
        } else {
          st.reason = pods.isEmpty() ? "WaitingForPod" : waitingReason(pods.get(pods.size() - 1));
          st.message = pods.isEmpty() ? "waiting for the Job to create the trainer Pod"
              : "trainer Pod " + pods.get(pods.size() - 1).getMetadata().getName() + " is not running yet";
        }
        Conditions.set(st, Conditions.RUNNING, false, st.reason, st.message, generation);
        Conditions.clear(st, Conditions.SUSPENDED, "Resumed", "the training Job is not suspended", generation);
      }
      case Suspended -> {
        st.phase = Phase.Suspended;
        st.reason = "Suspended";
        st.message = "the training Job is suspended; set spec.suspend to false to resume from the latest checkpoint";
        Conditions.set(st, Conditions.SUSPENDED, true, "Suspended", st.message, generation);
        Conditions.set(st, Conditions.RUNNING, false, "Suspended", st.message, generation);
      }
      case Running -> {
        if (running.isEmpty()) {
          // the trainer exited 0; the Job controller has not marked the Job complete yet
          st.phase = Phase.Running;
          st.reason = "Finishing";
          st.message = "the trainer exited successfully; waiting for the Job to complete";
          break;
        }
        Pod pod = running.get();
        st.phase = Phase.Running;
        st.reason = "Training";
        st.message = "trainer Pod " + pod.getMetadata().getName() + " is running";
        Conditions.set(st, Conditions.RUNNING, true, "Training", st.message, generation);
        Conditions.clear(st, Conditions.SUSPENDED, "Resumed", "the training Job is not suspended", generation);
        if (st.startTime == null) {
          st.startTime = pod.getStatus().getStartTime() != null ? pod.getStatus().getStartTime() : now();
          String node = pod.getSpec() == null ? null : pod.getSpec().getNodeName();
          events.normal(ftj, "Started", "Trainer Pod " + pod.getMetadata().getName() + " is running"
              + (node == null ? "" : " on node " + node));
        }
        String ip = pod.getStatus().getPodIP();
        if (ip != null && !ip.isBlank()) {
          progressSource.watch(id, ip, trainerPort(pod));
          progressSource.latest(id).ifPresent(p -> TrainerStatus.apply(st, p));
        }
      }
      case Succeeded, Failed -> finish(ftj, job, freshPods(ftj, job, pods, ctx), phase, st, generation);
    }
    trainerEvents(ftj, old, st, generation);
    if (phase.isTerminal()) {
      terminalEvent(ftj, st);
    }
    if (st.epochs == null && ftj.getSpec().training != null) {
      st.epochs = ftj.getSpec().training.epochs;
    }
    if (!Objects.equals(old.phase, st.phase)) {
      LOG.info("msg=\"phase\" namespace={} name={} from={} to={} reason={}", ns, ftj.getMetadata().getName(),
          old.phase, st.phase, st.reason);
    }
  }

  /** A trainer Pod exited with a "bad job" code (invalid spec or data, diverged loss): retrying cannot help. */
  static boolean badJobExit(List<Pod> pods) {
    return pods.stream().map(TerminationMessages::of).flatMap(Optional::stream)
        .anyMatch(t -> Arrays.stream(TrainerContract.ExitCodes.DO_NOT_RETRY).anyMatch(code -> code == t.exitCode()));
  }

  /** Parallelism 0: the Job controller starts no new Pod; the FineTuneJob is Failed and stays so. */
  private static void stopRetries(Context<FineTuneJob> ctx, Job job) {
    if (!Integer.valueOf(0).equals(job.getSpec().getParallelism())) {
      ctx.getClient().batch().v1().jobs().inNamespace(job.getMetadata().getNamespace())
          .withName(job.getMetadata().getName())
          .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"parallelism\":0}}");
    }
  }

  private void checkSpecChange(FineTuneJob ftj, Job job, FineTuneJobStatus old, FineTuneJobStatus st,
      Long generation) {
    String made = job.getMetadata().getAnnotations() == null ? null
        : job.getMetadata().getAnnotations().get(Names.SPEC_HASH_ANNOTATION);
    if (made == null) {
      return;
    }
    if (!made.equals(SpecHash.of(ftj.getSpec()))) {
      String message = "spec changed (generation " + generation + ") after training Job " + job.getMetadata().getName()
          + " was created; only spec.suspend can change because a Job's Pod template is immutable. The Job keeps"
          + " the spec it was created with; delete and re-create the FineTuneJob to change anything else.";
      boolean alreadyTold = Conditions.find(old, Conditions.SPEC_CHANGE_REFUSED)
          .map(c -> "True".equals(c.getStatus()) && Objects.equals(c.getObservedGeneration(), generation))
          .orElse(false);
      Conditions.set(st, Conditions.SPEC_CHANGE_REFUSED, true, "SpecChangeRefused", message, generation);
      if (!alreadyTold) {
        events.warning(ftj, "SpecChangeRefused", message);
      }
    } else {
      Conditions.clear(st, Conditions.SPEC_CHANGE_REFUSED, "SpecMatchesJob",
          "the spec matches the training Job", generation);
    }
  }

  /**
   * Applies a change of spec.suspend to the Job. Only a change is applied (the last applied value is an annotation
   * on the Job): a Job that a queue controller such as Kueue holds suspended until admission is left alone.
   */
  private Job suspendOrResume(FineTuneJob ftj, Job job, FineTuneJobStatus st, Context<FineTuneJob> ctx,
      Long generation) {
    boolean want = Boolean.TRUE.equals(ftj.getSpec().suspend);
    boolean is = Boolean.TRUE.equals(job.getSpec().getSuspend());
    String applied = job.getMetadata().getAnnotations() == null ? null
        : job.getMetadata().getAnnotations().get(Names.SUSPEND_ANNOTATION);
    boolean appliedWant = applied == null ? is : Boolean.parseBoolean(applied);
    if (want == appliedWant || jobCondition(job, "Complete") || jobCondition(job, "Failed")) {
      return job;
    }
    Job patched = ctx.getClient().batch().v1().jobs().inNamespace(job.getMetadata().getNamespace())
        .withName(job.getMetadata().getName())
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"metadata\":{\"annotations\":{\"" + Names.SUSPEND_ANNOTATION
            + "\":\"" + want + "\"}},\"spec\":{\"suspend\":" + want + "}}");
    if (want && !Boolean.TRUE.equals(patched.getSpec().getSuspend())) {
      String message = "the cluster dropped Job.spec.suspend (Kubernetes before 1.21); the trainer keeps running";
      Conditions.set(st, Conditions.SUSPENDED, false, "SuspendNotSupported", message, generation);
      events.warning(ftj, "SuspendNotSupported", message);
      return patched;
    }
    events.normal(ftj, want ? "Suspended" : "Resumed", want
        ? "Suspended training Job " + job.getMetadata().getName() + "; the trainer checkpoints and stops"
        : "Resumed training Job " + job.getMetadata().getName() + "; the trainer resumes from the latest checkpoint");
    return patched;
  }

  /**
   * The Pods to read the trainer's termination message from. The Job informer can be ahead of the Pod informer
   * (the Job controller marks the Job complete right after it sees the Pod end), so when the cache does not yet
   * show a terminated trainer, the Pods are listed from the API server once, at the end of the job.
   */
  private static List<Pod> freshPods(FineTuneJob ftj, Job job, List<Pod> cached, Context<FineTuneJob> ctx) {
    boolean cacheHasEnd = !cached.isEmpty() && cached.get(cached.size() - 1).getStatus() != null
        && Set.of("Succeeded", "Failed").contains(cached.get(cached.size() - 1).getStatus().getPhase())
        && TerminationMessages.of(cached.get(cached.size() - 1)).isPresent();
    if (cacheHasEnd) {
      return cached;
    }
    String jobUid = job.getMetadata().getUid();
    return ctx.getClient().pods().inNamespace(ftj.getMetadata().getNamespace())
        .withLabel(Names.JOB_LABEL, ftj.getMetadata().getName()).list().getItems().stream()
        .filter(p -> p.getMetadata().getOwnerReferences() != null && p.getMetadata().getOwnerReferences().stream()
            .anyMatch(o -> Objects.equals(o.getUid(), jobUid)))
        .toList();
  }

  private void finish(FineTuneJob ftj, Job job, List<Pod> pods, Phase phase, FineTuneJobStatus st, Long generation) {
    Optional<Termination> t = TerminationMessages.latest(pods);
    t.map(Termination::summary).ifPresent(s -> TrainerStatus.apply(st, s));
    JobCondition jc = job.getStatus() == null || job.getStatus().getConditions() == null ? null
        : job.getStatus().getConditions().stream()
            .filter(c -> (phase == Phase.Succeeded ? "Complete" : "Failed").equals(c.getType())
                && "True".equals(c.getStatus()))
            .findFirst().orElse(null);
    var summary = t.map(Termination::summary).orElse(null);
    st.phase = phase;
    if (phase == Phase.Succeeded) {
      st.reason = summary != null && summary.reason != null ? summary.reason
          : Boolean.TRUE.equals(st.earlyStopped) ? "EarlyStopped" : "Completed";
      st.message = summary != null && summary.message != null ? summary.message : "training finished";
    } else {
      st.reason = summary != null && summary.reason != null ? summary.reason
          : jc != null && jc.getReason() != null ? jc.getReason() : "Failed";
      st.message = summary != null && summary.message != null ? summary.message
          : t.map(Termination::message).filter(m -> m != null && !m.isBlank())
              .map(m -> "trainer exited with code " + t.get().exitCode() + ": " + m.strip())
              .or(() -> Optional.ofNullable(jc == null ? null : jc.getMessage()))
              .orElse("the training Job failed");
    }
    String completed = job.getStatus() != null && job.getStatus().getCompletionTime() != null
        ? job.getStatus().getCompletionTime()
        : jc != null && jc.getLastTransitionTime() != null ? jc.getLastTransitionTime() : now();
    st.completionTime = completed;
    if (st.startTime == null) {
      st.startTime = job.getStatus() != null && job.getStatus().getStartTime() != null
          ? job.getStatus().getStartTime() : completed;
    }
    Conditions.set(st, Conditions.RUNNING, false, phase.name(), st.message, generation);
    Conditions.set(st, phase == Phase.Succeeded ? Conditions.SUCCEEDED : Conditions.FAILED, true, st.reason,
        st.message, generation);
  }

  private void trainerEvents(FineTuneJob ftj, FineTuneJobStatus old, FineTuneJobStatus st, Long generation) {
    int before = old.epoch == null ? 0 : old.epoch;
    int now = st.epoch == null ? 0 : st.epoch;
    if (now > before) {
      List<EpochRecord> fresh = st.history == null ? List.of() : st.history.stream()
          .filter(r -> r.epoch != null && r.epoch > before && r.epoch <= now).toList();
      if (fresh.isEmpty()) {
        events.normal(ftj, "EpochFinished", epochText(now, st.epochs, st.trainLoss, st.validationLoss));
      } else {
        fresh.stream().skip(Math.max(0, fresh.size() - MAX_EPOCH_EVENTS)).forEach(r ->
            events.normal(ftj, "EpochFinished", epochText(r.epoch, st.epochs, r.trainLoss, r.validationLoss)));
      }
    }
    if (Boolean.TRUE.equals(st.earlyStopped) && !Boolean.TRUE.equals(old.earlyStopped)) {
      String message = "validation loss stopped improving; the best epoch is " + st.bestEpoch
          + (st.bestValidationLoss == null ? "" : " (validation loss " + fmt(st.bestValidationLoss) + ")");
      Conditions.set(st, Conditions.EARLY_STOPPED, true, "EarlyStopped", message, generation);
      events.normal(ftj, "EarlyStopped", "Training stopped early: " + message);
    }
    String restored = st.checkpoint == null ? null : st.checkpoint.restoredFrom;
    String wasRestored = old.checkpoint == null ? null : old.checkpoint.restoredFrom;
    if (restored != null && !restored.equals(wasRestored)) {
      events.normal(ftj, "CheckpointRestored", "Trainer resumed from checkpoint " + restored + " after a restart");
    }
  }

  private void terminalEvent(FineTuneJob ftj, FineTuneJobStatus st) {
    if (st.phase == Phase.Succeeded) {
      events.normal(ftj, "Succeeded", "Training finished (" + st.reason + "): epoch " + TrainerStatus.progress(st)
          + (st.bestEpoch == null ? "" : ", best epoch " + st.bestEpoch)
          + (st.bestValidationLoss == null ? "" : " with validation loss " + fmt(st.bestValidationLoss)));
      LOG.info("msg=\"succeeded\" namespace={} name={}", ftj.getMetadata().getNamespace(), ftj.getMetadata().getName());
    } else if (st.phase == Phase.Failed) {
      events.warning(ftj, "Failed", "Training failed (" + st.reason + "): " + st.message);
      LOG.info("msg=\"failed\" namespace={} name={} reason={}", ftj.getMetadata().getNamespace(),
          ftj.getMetadata().getName(), st.reason);
    }
  }

  private static boolean finishing(List<Pod> pods) {
    return !pods.isEmpty() && pods.get(pods.size() - 1).getStatus() != null
        && "Succeeded".equals(pods.get(pods.size() - 1).getStatus().getPhase());
  }

  private int trainerPort(Pod pod) {
    return pod.getSpec() == null || pod.getSpec().getContainers() == null ? config.trainerPort()
        : pod.getSpec().getContainers().stream()
            .filter(c -> Names.CONTAINER.equals(c.getName()) && c.getPorts() != null)
            .flatMap(c -> c.getPorts().stream())
            .filter(p -> Names.METRICS_PORT_NAME.equals(p.getName()) && p.getContainerPort() != null)
            .map(p -> p.getContainerPort())
            .findFirst().orElse(config.trainerPort());
  }

  private static String waitingReason(Pod pod) {
    if (pod.getStatus() == null) {
      return "PodPending";
    }
    if (pod.getStatus().getContainerStatuses() != null) {
      for (var cs : pod.getStatus().getContainerStatuses()) {
        if (cs.getState() != null && cs.getState().getWaiting() != null && cs.getState().getWaiting().getReason() != null) {
          return cs.getState().getWaiting().getReason();
        }
      }
    }
    if (pod.getStatus().getConditions() != null) {
      for (var c : pod.getStatus().getConditions()) {
        if ("PodScheduled".equals(c.getType()) && "False".equals(c.getStatus()) && c.getReason() != null) {
          return c.getReason();
        }
      }
    }
    return "PodPending";
  }

  private static String summaryText(Termination t) {
    if (t.summary() != null && t.summary().reason != null) {
      return " (" + t.summary().reason + (t.summary().message == null ? "" : ": " + t.summary().message) + ")";
    }
    return "";
  }

  private static boolean jobCondition(Job job, String type) {
    return job.getStatus() != null && job.getStatus().getConditions() != null && job.getStatus().getConditions()
        .stream().anyMatch(c -> type.equals(c.getType()) && "True".equals(c.getStatus()));
  }

  private static String epochText(int epoch, Integer epochs, Double train, Double val) {
    return "Epoch " + epoch + (epochs == null ? "" : "/" + epochs) + " finished: train loss " + fmt(train)
        + ", validation loss " + fmt(val);
  }

  private static String fmt(Double d) {
    return d == null ? "n/a" : String.format(Locale.ROOT, "%.4f", d);
  }

  private static int nz(Integer i) {
    return i == null ? 0 : i;
  }

  private static String now() {
    return Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
  }
}
