package dev.finetune.operator.metrics;

import dev.finetune.api.FineTuneJob;
import dev.finetune.api.FineTuneJobStatus;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.function.Supplier;
import java.util.stream.Stream;

/**
 * The operator's own metrics, next to JOSDK's reconcile metrics: {@code finetune_operator_jobs{phase}} (jobs by
 * phase, counted from the informer cache at scrape time; jobs without a status yet count as Pending) and
 * {@code finetune_operator_restarts_total} (trainer Pod restarts seen).
 */
public class OperatorMetrics {
  public static final String JOBS = "finetune.operator.jobs";
  public static final String RESTARTS = "finetune.operator.restarts";
  public static final String RECONCILE_ERRORS = "finetune.operator.reconcile.errors";
  private final MeterRegistry registry;
  private final Counter restarts;
  private final Counter reconcileErrors;
  private volatile Supplier<Stream<FineTuneJob>> jobs = Stream::empty;

  public OperatorMetrics(MeterRegistry registry) {
    this.registry = registry;
    for (FineTuneJobStatus.Phase phase : FineTuneJobStatus.Phase.values()) {
      Gauge.builder(JOBS, () -> count(phase))
          .description("FineTuneJobs by phase")
          .tag("phase", phase.name())
          .register(registry);
    }
    this.restarts = Counter.builder(RESTARTS)
        .description("Trainer Pod restarts (crashes and evictions) seen by the operator")
        .register(registry);
    // registered at 0, unlike JOSDK's failure counter, which appears only after the first failure
    this.reconcileErrors = Counter.builder(RECONCILE_ERRORS)
        .description("Reconciliations that failed and are retried (API errors)")
        .register(registry);
  }

  public void reconcileFailed() {
    reconcileErrors.increment();
  }

  /** Where the jobs come from: the controller's primary cache, once the controller is registered. */
  public void jobsFrom(Supplier<Stream<FineTuneJob>> source) {
    this.jobs = source;
  }

  public void restarted(int count) {
    if (count > 0) {
      restarts.increment(count);
    }
  }

  public MeterRegistry registry() {
    return registry;
  }

  private double count(FineTuneJobStatus.Phase phase) {
    return jobs.get().filter(j -> phaseOf(j) == phase).count();
  }

  private static FineTuneJobStatus.Phase phaseOf(FineTuneJob j) {
    return j.getStatus() == null || j.getStatus().phase == null ? FineTuneJobStatus.Phase.Pending : j.getStatus().phase;
  }
}
