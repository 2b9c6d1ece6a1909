package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobStatus.Phase;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerReport;
import io.fabric8.kubernetes.api.model.Pod;
import io.javaoperatorsdk.operator.OperatorException;
import io.javaoperatorsdk.operator.processing.event.Event;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.AbstractEventSource;
import io.javaoperatorsdk.operator.processing.event.source.IndexerResourceCache;
import io.javaoperatorsdk.operator.processing.event.source.ResourceEventAware;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The trainers' {@code /progress} documents as a secondary resource of their FineTuneJobs, read in a
 * reconciliation with {@code context.getSecondaryResource(TrainerReport.class)}.
 *
 * <p>Which trainer to poll follows from the FineTuneJob itself, as in a per-resource polling event source: a job
 * whose status is Running is polled at its newest running trainer Pod, at once when that Pod is new and then at
 * a steady interval. Requests are asynchronous and off the reconciler's threads; a trainer whose previous request
 * is still open is skipped, so slow or unreachable trainers never pile up or delay others. A FineTuneJob is
 * reconciled only when what its status shows from the document changed.
 */
public class ProgressEventSource extends AbstractEventSource<TrainerReport, FineTuneJob>
    implements ResourceEventAware<FineTuneJob> {
  /** Where one trainer answers. */
  record Target(String pod, String ip, int port) {}

  private final ProgressClient client;
  private final Duration interval;
  private final Supplier<IndexerResourceCache<FineTuneJob>> primaries;
  private final Function<FineTuneJob, Set<Pod>> podsOf;
  private final int defaultPort;
  private final Map<ResourceID, Target> targets = new ConcurrentHashMap<>();
  private final Map<ResourceID, TrainerReport> latest = new ConcurrentHashMap<>();
  private final Map<ResourceID, String> shown = new ConcurrentHashMap<>();
  private final Set<Target> inFlight = ConcurrentHashMap.newKeySet();
  private volatile ScheduledExecutorService scheduler;

  /**
   * @param primaries the FineTuneJobs (the controller's cache, once it exists)
   * @param podsOf a FineTuneJob's Pods, from the Pod informer
   * @param defaultPort the trainer's port when its Pod names none
   */
  public ProgressEventSource(ProgressClient client, Duration interval,
      Supplier<IndexerResourceCache<FineTuneJob>> primaries, Function<FineTuneJob, Set<Pod>> podsOf, int defaultPort) {
    super(TrainerReport.class, "trainer-progress");
    this.client = client;
    this.interval = interval;
    this.primaries = primaries;
    this.podsOf = podsOf;
    this.defaultPort = defaultPort;
  }

  @Override
  public void start() throws OperatorException {
    scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "progress-poller");
      t.setDaemon(true);
      return t;
    });
    long ms = interval.toMillis();
    scheduler.scheduleAtFixedRate(this::pollAll, ms, ms, TimeUnit.MILLISECONDS);
    super.start();
  }

  @Override
  public void stop() throws OperatorException {
    super.stop();
    if (scheduler != null) {
      scheduler.shutdownNow();
    }
  }

  @Override
  public Set<TrainerReport> getSecondaryResources(FineTuneJob primary) {
    TrainerReport p = latest.get(ResourceID.fromResource(primary));
    return p == null ? Set.of() : Set.of(p);
  }

  @Override
  public void onResourceCreated(FineTuneJob ftj) {
    follow(ftj, false);
  }

  @Override
  public void onResourceUpdated(FineTuneJob ftj, FineTuneJob old) {
    follow(ftj, false);
  }

  @Override
  public void onResourceDeleted(FineTuneJob ftj) {
    forget(ResourceID.fromResource(ftj));
  }

  private void pollAll() {
    try {
      IndexerResourceCache<FineTuneJob> cache = primaries.get();
      if (cache == null) {
        return;
      }
      targets.keySet().stream().filter(id -> cache.get(id).isEmpty()).toList().forEach(this::forget);
      cache.list().forEach(ftj -> follow(ftj, true));
    } catch (RuntimeException e) {
      // keep the schedule alive whatever happens in one round
    }
  }

  /** Polls the job's trainer from now on (at once when its Pod is new, else only when due), or stops. */
  private void follow(FineTuneJob ftj, boolean due) {
    ResourceID id = ResourceID.fromResource(ftj);
    Optional<Target> target = targetOf(ftj);
    if (target.isEmpty()) {
      if (targets.containsKey(id)) {
        forget(id);
      }
      return;
    }
    Target t = target.get();
    if (!t.equals(targets.put(id, t))) {
      latest.remove(id); // a new Pod's trainer: what the last one reported is not its progress
      shown.remove(id);
      poll(id, t);
    } else if (due) {
      poll(id, t);
    }
  }

  /** The newest running trainer Pod of a job whose status is Running (the reconciler saw it run). */
  private Optional<Target> targetOf(FineTuneJob ftj) {
    FineTuneJobStatus st = ftj.getStatus();
    if (st == null || st.phase != Phase.Running || st.jobName == null) {
      return Optional.empty();
    }
    return TrainerPods.running(TrainerPods.rankZero(st.jobName, podsOf.apply(ftj)))
        .filter(p -> p.getStatus().getPodIP() != null && !p.getStatus().getPodIP().isBlank())
        .map(p -> new Target(p.getMetadata().getName(), p.getStatus().getPodIP(), TrainerPods.port(p, defaultPort)));
  }

  private void forget(ResourceID id) {
    targets.remove(id);
    latest.remove(id);
    shown.remove(id);
  }

  private void poll(ResourceID id, Target t) {
    if (!inFlight.add(t)) {
      return;
    }
    client.fetchAsync(t.ip(), t.port()).whenComplete((progress, error) -> {
      inFlight.remove(t);
      if (progress == null || !t.equals(targets.get(id))) {
        return;
      }
      FineTuneJobStatus projection = new FineTuneJobStatus();
      TrainerStatus.apply(projection, progress);
      String view = FineTuneJobs.toJson(projection);
      latest.put(id, progress);
      if (!view.equals(shown.put(id, view)) && isRunning()) {
        getEventHandler().handleEvent(new Event(id));
      }
    });
  }
}
