package dev.finetune.operator.observer;

import dev.finetune.api.FineTuneJobStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Optional;

/** Condition types of a FineTuneJob and a setter that keeps lastTransitionTime when the status does not change. */
public final class Conditions {
  public static final String READY = "Ready";
  public static final String RUNNING = "Running";
  public static final String SUCCEEDED = "Succeeded";
  public static final String FAILED = "Failed";
  public static final String SUSPENDED = "Suspended";
  public static final String EARLY_STOPPED = "EarlyStopped";
  public static final String SPEC_CHANGE_REFUSED = "SpecChangeRefused";

  private Conditions() {}

  public static Optional<Condition> find(FineTuneJobStatus status, String type) {
    return status.conditions == null ? Optional.empty()
        : status.conditions.stream().filter(c -> type.equals(c.getType())).findFirst();
  }

  public static boolean isTrue(FineTuneJobStatus status, String type) {
    return find(status, type).map(c -> "True".equals(c.getStatus())).orElse(false);
  }

  /** Sets a condition; true when its status changed (or it is new). */
  public static boolean set(FineTuneJobStatus status, String type, boolean value, String reason, String message,
      Long generation) {
    if (status.conditions == null) {
      status.conditions = new ArrayList<>();
    }
    String s = value ? "True" : "False";
    Optional<Condition> old = find(status, type);
    if (old.isPresent()) {
      Condition c = old.get();
      boolean changed = !s.equals(c.getStatus());
      if (changed) {
        c.setLastTransitionTime(now());
      }
      c.setStatus(s);
      c.setReason(reason);
      c.setMessage(message == null ? "" : message);
      c.setObservedGeneration(generation);
      return changed;
    }
    status.conditions.add(new ConditionBuilder()
        .withType(type).withStatus(s).withReason(reason).withMessage(message == null ? "" : message)
        .withObservedGeneration(generation).withLastTransitionTime(now()).build());
    return true;
  }

  /** Sets it only if it exists already (so that an irrelevant condition is not added as False). */
  public static void clear(FineTuneJobStatus status, String type, String reason, String message, Long generation) {
    if (find(status, type).isPresent()) {
      set(status, type, false, reason, message, generation);
    }
  }

  /**
   * Phase Failed with its reason and message, the completion time and condition Failed=True: a job that cannot
   * go on (refused spec, foreign object under a needed name, deleted Job, failed trainer).
   */
  public static void fail(FineTuneJobStatus status, String reason, String message, Long generation) {
    status.phase = FineTuneJobStatus.Phase.Failed;
    status.reason = reason;
    status.message = message;
    status.completionTime = now();
    set(status, FAILED, true, reason, message, generation);
  }

  /** Now, to the second, as the API server writes times. */
  public static String now() {
    return Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
  }
}
