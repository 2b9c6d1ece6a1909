package dev.finetune.operator.resources;

import dev.finetune.api.FineTuneJob;

/** Names, labels and annotations of the objects a FineTuneJob owns. */
public final class Names {
  private Names() {}

  /** On every owned object and on the trainer Pod: the FineTuneJob's name (maps events back to it). */
  public static final String JOB_LABEL = "finetune.dev/job";
  public static final String MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
  public static final String MANAGED_BY = "finetune-operator";
  public static final String NAME_LABEL = "app.kubernetes.io/name";
  public static final String COMPONENT_LABEL = "app.kubernetes.io/component";
  /** Scrape label of the trainer Pod, for a PodMonitor's selector. */
  public static final String METRICS_LABEL = "finetune.dev/metrics";
  /** The informers' selector: only objects this operator made. */
  public static final String MANAGED_SELECTOR = MANAGED_BY_LABEL + "=" + MANAGED_BY;
  /** Hash of the spec without suspend, on the Job: a different hash means a refused spec change. */
  public static final String SPEC_HASH_ANNOTATION = "finetune.dev/spec-hash";
  /**
   * On the Job: the spec.suspend the operator last applied. The Job's suspend is patched only when spec.suspend
   * changes, so a queue controller (Kueue) that holds a Job suspended until admission is not overridden.
   */
  public static final String SUSPEND_ANNOTATION = "finetune.dev/suspend";
  /** On trainer Pods of a job with several nodes: "leader" (node 0, the run folder) or "worker". */
  public static final String ROLE_LABEL = "finetune.dev/role";
  public static final String LEADER = "leader";
  public static final String WORKER = "worker";
  /** A multi-node JobSet's replicated Jobs: {@link #LEADER} (node 0) and this one (the other nodes). */
  public static final String WORKERS = "workers";
  /** Set by the Job controller on each Pod of an Indexed Job. */
  public static final String COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index";
  public static final String CONTAINER = "trainer";
  public static final String METRICS_PORT_NAME = "metrics";

  /** The training Job, or a multi-node job's JobSet. */
  public static String job(FineTuneJob ftj) {
    return ftj.getMetadata().getName() + "-train";
  }

  /** The Indexed Job of a multi-node job's other nodes (ranks beyond the leader Pod's). */
  public static String workersJob(FineTuneJob ftj) {
    return ftj.getMetadata().getName() + "-workers";
  }

  /** The headless Service that resolves to the leader Pod: the workers' MASTER_ADDR (a name must start with a letter). */
  public static String rendezvous(FineTuneJob ftj) {
    return "rdzv-" + ftj.getMetadata().getName();
  }

  /** Nodes (Pods) the job trains on: spec.resources.nodes, at least 1. */
  public static int nodes(FineTuneJob ftj) {
    var r = ftj.getSpec().resources;
    return r == null || r.nodes == null || r.nodes < 1 ? 1 : r.nodes;
  }

  /** Ranks on each node: one per GPU, or one on the CPU. */
  public static int ranksPerNode(FineTuneJob ftj) {
    var r = ftj.getSpec().resources;
    return r == null || r.gpus == null || r.gpus < 1 ? 1 : r.gpus;
  }

  public static String configMap(FineTuneJob ftj) {
    return ftj.getMetadata().getName() + "-spec";
  }

  public static String claim(FineTuneJob ftj) {
    return ftj.getMetadata().getName() + "-checkpoints";
  }

  /** The checkpoint claim the Pod mounts: the named existing one or the operator's. */
  public static String checkpointClaim(FineTuneJob ftj) {
    String named = ftj.getSpec().checkpoints == null ? null : ftj.getSpec().checkpoints.claimName;
    return named != null && !named.isBlank() ? named : claim(ftj);
  }

  public static boolean createsClaim(FineTuneJob ftj) {
    String named = ftj.getSpec().checkpoints == null ? null : ftj.getSpec().checkpoints.claimName;
    return named == null || named.isBlank();
  }

  /**
   * Whether the claim the operator creates outlives the job: unless spec.checkpoints.retainClaim is false (the CRD's
   * default, and the Java default, is true; a missing value keeps the results too).
   */
  public static boolean retainsClaim(FineTuneJob ftj) {
    var cp = ftj.getSpec().checkpoints;
    return cp == null || !Boolean.FALSE.equals(cp.retainClaim);
  }

  /** Run directory below the workspace: spec.checkpoints.path or the job's name. */
  public static String runDir(FineTuneJob ftj) {
    String path = ftj.getSpec().checkpoints == null ? null : ftj.getSpec().checkpoints.path;
    if (path == null || path.isBlank()) {
      return ftj.getMetadata().getName();
    }
    String p = path.strip();
    while (p.startsWith("/")) {
      p = p.substring(1);
    }
    return p.isEmpty() ? ftj.getMetadata().getName() : p;
  }
}
