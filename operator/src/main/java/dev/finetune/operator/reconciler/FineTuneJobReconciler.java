package dev.finetune.operator.reconciler;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.validation.FineTuneJobValidator;
import dev.finetune.api.validation.Problem;
import dev.finetune.operator.config.OperatorConfig;
import dev.finetune.operator.metrics.OperatorMetrics;
import dev.finetune.operator.observer.Conditions;
import dev.finetune.operator.observer.JobObserver;
import dev.finetune.operator.observer.ProgressClient;
import dev.finetune.operator.observer.ProgressEventSource;
import dev.finetune.operator.observer.Snapshot;
import dev.finetune.operator.observer.TrainerStatus;
import dev.finetune.operator.resources.JobSet;
import dev.finetune.operator.resources.Names;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.PersistentVolumeClaim;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
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
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns a FineTuneJob into a checkpoint claim, a ConfigMap with the job file and a training Job (with several nodes
 * also the workers' Job, or one JobSet for both), and mirrors the Job, its Pods and the trainer's progress into the FineTuneJob's status. A reconciliation reads as
 * observe ({@link JobObserver}) -> validate -> act ({@link JobDeployer}) -> record Events ({@link StatusEvents})
 * and patch the status.
 *
 * <p>Reads come from informer caches (Jobs, JobSets, Pods, ConfigMaps and claims labelled as managed by this operator)
 * and from the {@link ProgressEventSource}, which polls running trainers off the reconciler's threads, so an idle
 * operator makes no API calls. Succeeded and Failed are final: after them nothing is created or changed.
 */
@ControllerConfiguration(name = FineTuneJobReconciler.NAME)
public class FineTuneJobReconciler implements Reconciler<FineTuneJob> {
  public static final String NAME = "finetunejob";
  private static final Logger LOG = LoggerFactory.getLogger(FineTuneJobReconciler.class);
  /** Reasons of a job refused before any Job existed: it starts when its spec is fixed. */
  private static final Set<String> REFUSED = Set.of("InvalidSpec", "Rejected", "NameConflict");

  private final OperatorConfig config;
  private final OperatorMetrics metrics;
  private final EventRecorder recorder;
  private final JobDeployer deployer;
  private final StatusEvents events;
  private final boolean jobSets;

  /**
   * @param jobSets whether a job with several nodes runs as a JobSet (then JobSets are watched too)
   */
  public FineTuneJobReconciler(OperatorConfig config, KubernetesClient client, OperatorMetrics metrics,
      boolean jobSets) {
    this.config = config;
    this.metrics = metrics;
    this.recorder = new EventRecorder(client, config.identity());
    this.deployer = new JobDeployer(config, jobSets);
    this.events = new StatusEvents(recorder, jobSets);
    this.jobSets = jobSets;
  }

  @Override
  public List<EventSource<?, FineTuneJob>> prepareEventSources(EventSourceContext<FineTuneJob> context) {
    metrics.jobsFrom(() -> context.getPrimaryCache().list());
    InformerEventSource<Pod, FineTuneJob> pods = informer(context, Pod.class, "pods");
    ProgressEventSource progress = new ProgressEventSource(new ProgressClient(config.progressTimeout()),
        config.progressInterval(), context::getPrimaryCache, pods::getSecondaryResources, config.trainerPort());
    List<EventSource<?, FineTuneJob>> sources = new ArrayList<>(List.of(
        progress,
        informer(context, Job.class, "jobs"),
        pods,
        informer(context, ConfigMap.class, "configmaps"),
        informer(context, PersistentVolumeClaim.class, "claims")));
    if (jobSets) {
      sources.add(informer(context, JobSet.class, "jobsets"));
    }
    return sources;
  }

  /** An informer on the objects this operator made, mapped to their FineTuneJob by label. */
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
    if (isFinal(ftj, old)) {
      deployer.stopTheRest(ftj, old, ctx); // in case the last reconciliation could not
      deployer.expireWhenRecorded(ftj, old, ctx);
      return UpdateControl.noUpdate(); // nothing is re-created or changed
    }
    FineTuneJobStatus st = old.phase != null && old.phase.isTerminal() ? new FineTuneJobStatus() : copy(old);

    Snapshot seen = Snapshot.read(ftj, st, ctx, jobSets);
    JobObserver.observe(ftj, st, seen);
    if (seen.job().isPresent()) {
      deployer.align(ftj, seen, ctx);
    } else if (st.jobName == null) { // nothing made yet
      List<Problem> problems = FineTuneJobValidator.validate(ftj);
      if (problems.isEmpty()) {
        deployer.create(ftj, st, ctx);
      } else {
        invalid(ftj, st, problems);
      }
    }

    events.record(ftj, old, st, seen);
    metrics.restarted(nz(st.restarts) - nz(old.restarts));
    st.observedGeneration = ftj.getMetadata().getGeneration();
    st.progress = TrainerStatus.progress(st);
    Conditions.clear(st, Conditions.READY, "Reconciled", "the last reconciliation succeeded", st.observedGeneration);
    if (!FineTuneJobs.toJson(st).equals(FineTuneJobs.toJson(old))) {
      writeStatus(ftj, st, ctx);
    }
    deployer.stopTheRest(ftj, st, ctx);
    deployer.expireWhenRecorded(ftj, st, ctx);
    return UpdateControl.noUpdate();
  }

  /** Succeeded and Failed are final, except for a job refused before any Job existed whose spec has changed. */
  private static boolean isFinal(FineTuneJob ftj, FineTuneJobStatus old) {
    if (old.phase == null || !old.phase.isTerminal()) {
      return false;
    }
    boolean refusedBeforeAJob = REFUSED.contains(old.reason) && old.jobName == null;
    return !refusedBeforeAJob || Objects.equals(ftj.getMetadata().getGeneration(), old.observedGeneration);
  }

  private static void invalid(FineTuneJob ftj, FineTuneJobStatus st, List<Problem> problems) {
    String message = problems.stream().map(Problem::toString).collect(Collectors.joining("; "));
    Conditions.fail(st, "InvalidSpec", message, ftj.getMetadata().getGeneration());
    LOG.info("msg=\"invalid spec\" namespace={} name={} problems={}", ftj.getMetadata().getNamespace(),
        ftj.getMetadata().getName(), problems.size());
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
    String error = e instanceof KubernetesClientException k ? JobDeployer.serverMessage(k) : String.valueOf(e.getMessage());
    String message = "reconciliation failed, retrying: " + error;
    String msg = message.length() > 1000 ? message.substring(0, 997) + "..." : message;
    LOG.warn("msg=\"reconcile failed\" namespace={} name={} error=\"{}\"", ftj.getMetadata().getNamespace(),
        ftj.getMetadata().getName(), msg.replace("\"", "'"));
    boolean same = Conditions.find(st, Conditions.READY)
        .map(c -> "ReconcileError".equals(c.getReason()) && msg.equals(c.getMessage())).orElse(false);
    if (same) {
      return ErrorStatusUpdateControl.defaultErrorProcessing();
    }
    Conditions.set(st, Conditions.READY, false, "ReconcileError", msg, ftj.getMetadata().getGeneration());
    recorder.warning(ftj, "ReconcileError", msg);
    ftj.setStatus(st);
    return ErrorStatusUpdateControl.patchStatus(ftj);
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

  private static FineTuneJobStatus copy(FineTuneJobStatus status) throws IOException {
    return FineTuneJobs.json().readValue(FineTuneJobs.toJson(status), FineTuneJobStatus.class);
  }

  private static int nz(Integer i) {
    return i == null ? 0 : i;
  }
}
