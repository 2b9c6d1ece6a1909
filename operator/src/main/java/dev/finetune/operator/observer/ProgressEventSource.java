package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import dev.finetune.api.FineTuneJobs;
import dev.finetune.api.trainer.TrainerProgress;
import io.javaoperatorsdk.operator.OperatorException;
import io.javaoperatorsdk.operator.processing.event.Event;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.AbstractEventSource;
import io.javaoperatorsdk.operator.processing.event.source.IndexerResourceCache;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Polls the {@code /progress} endpoint of every running trainer at a steady interval, off the reconciler's
 * threads (asynchronous HTTP; a trainer whose previous request is still open is skipped, so slow or unreachable
 * trainers never pile up). A FineTuneJob is reconciled only when what its status shows from the document
 * changed. The reconciler registers a trainer when its Pod runs ({@link #watch}) and removes it otherwise.
 */
public class ProgressEventSource extends AbstractEventSource<TrainerProgress, FineTuneJob> {
  record Target(String ip, int port) {}

  private final ProgressClient client;
  private final Duration interval;
  private final Supplier<IndexerResourceCache<FineTuneJob>> primaries;
  private final Map<ResourceID, Target> targets = new ConcurrentHashMap<>();
  private final Map<ResourceID, TrainerProgress> latest = new ConcurrentHashMap<>();
  private final Map<ResourceID, String> shown = new ConcurrentHashMap<>();
  private final Set<ResourceID> inFlight = ConcurrentHashMap.newKeySet();
  private volatile ScheduledExecutorService scheduler;

  public ProgressEventSource(ProgressClient client, Duration interval,
      Supplier<IndexerResourceCache<FineTuneJob>> primaries) {
    super(TrainerProgress.class, "trainer-progress");
    this.client = client;
    this.interval = interval;
    this.primaries = primaries;
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

  /** Polls this trainer from now on (at once when it is new or moved). */
  public void watch(ResourceID id, String ip, int port) {
    Target t = new Target(ip, port);
    if (!t.equals(targets.put(id, t))) {
      poll(id, t);
    }
  }

  public void unwatch(ResourceID id) {
    targets.remove(id);
    latest.remove(id);
    shown.remove(id);
  }

  public Optional<TrainerProgress> latest(ResourceID id) {
    return Optional.ofNullable(latest.get(id));
  }

  public int watched() {
    return targets.size();
  }

  @Override
  public Set<TrainerProgress> getSecondaryResources(FineTuneJob primary) {
    return latest(ResourceID.fromResource(primary)).map(Set::of).orElse(Set.of());
  }

  private void pollAll() {
    try {
      IndexerResourceCache<FineTuneJob> cache = primaries.get();
      targets.forEach((id, t) -> {
        if (cache != null && cache.get(id).isEmpty()) {
          unwatch(id); // the FineTuneJob was deleted
        } else {
          poll(id, t);
        }
      });
    } catch (RuntimeException e) {
      // keep the schedule alive whatever happens in one round
    }
  }

  private void poll(ResourceID id, Target t) {
    if (!inFlight.add(id)) {
      return;
    }
    client.fetchAsync(t.ip(), t.port()).whenComplete((progress, error) -> {
      inFlight.remove(id);
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
