package dev.finetune.api.trainer;

/**
 * What the operator and the trainer agree on: mount points, the HTTP port and its paths, environment
 * variables and exit codes. Change one side, change both: both compile against this class.
 */
public final class TrainerContract {
  private TrainerContract() {}

  /** The trainer jar inside the image; the container runs {@code java -jar TRAINER_JAR SPEC_FILE --output DIR}. */
  public static final String TRAINER_JAR = "/app/finetune-trainer.jar";
  /** The one writable scratch directory of the read-only root filesystem (an emptyDir): tmp files, DJL's cache. */
  public static final String SCRATCH = "/tmp";
  /** Where the operator mounts the FineTuneJob file; the trainer's first argument. */
  public static final String SPEC_FILE = "/etc/finetune/job.yaml";
  /** Key of the spec in the operator's ConfigMap. */
  public static final String SPEC_KEY = "job.yaml";
  /** Where the checkpoint volume is mounted; the run directory is below it. */
  public static final String WORKSPACE = "/workspace";
  /** Where model and dataset claims are mounted, read-only. */
  public static final String MODEL_MOUNT = "/mnt/model";
  public static final String DATA_MOUNT = "/mnt/data";
  /** Where a ConfigMap data set is mounted. */
  public static final String DATA_CONFIGMAP_MOUNT = "/mnt/dataset-configmap";

  /**
   * Environment: where the operator mounted the model claim, the data claim and the data set ConfigMap. The
   * trainer resolves spec paths against these, so a node that maps volumes elsewhere still works; without them
   * it uses the mount points above, and in a local run the job file's directory.
   */
  public static final String ENV_MODEL_DIR = "FINETUNE_MODEL_DIR";
  public static final String ENV_DATA_DIR = "FINETUNE_DATA_DIR";
  public static final String ENV_DATASET_CONFIGMAP_DIR = "FINETUNE_DATASET_CONFIGMAP_DIR";

  /** Where a volume is mounted: the environment variable's value, else the default mount point. */
  public static java.nio.file.Path mountDir(String envName, String defaultMount) {
    String dir = System.getenv(envName);
    return java.nio.file.Path.of(dir == null || dir.isBlank() ? defaultMount : dir);
  }

  /** The one HTTP port: /metrics, /progress, /healthz. */
  public static final int DEFAULT_PORT = 9090;
  public static final String METRICS_PATH = "/metrics";
  public static final String PROGRESS_PATH = "/progress";
  public static final String HEALTH_PATH = "/healthz";

  /** Environment: the HTTP port (0 turns the server off in local runs). */
  public static final String ENV_PORT = "FINETUNE_PORT";
  /** Environment: where the termination summary goes (Kubernetes' terminationMessagePath). */
  public static final String ENV_TERMINATION_LOG = "FINETUNE_TERMINATION_LOG";
  public static final String DEFAULT_TERMINATION_LOG = "/dev/termination-log";
  /**
   * Environment: the memory the trainer may use, in bytes (e.g. the downward API's limits.memory). Without it the
   * trainer reads its container's cgroup limit.
   */
  public static final String ENV_MEMORY_LIMIT = "FINETUNE_MEMORY_LIMIT";
  /**
   * Environment of a multi-node job's worker Pods: the Pod's completion index in the workers' Indexed Job. Its node
   * rank is the index + 1 (node 0 is the leader Pod, which sets {@code NODE_RANK=0}).
   */
  public static final String ENV_WORKER_INDEX = "FINETUNE_WORKER_INDEX";
  /** The TCP port of a multi-node job's rendezvous (c10d's TCPStore on rank 0), as torchrun's default. */
  public static final int RENDEZVOUS_PORT = 29500;
  /** Environment: the judge's API key, from spec.evaluation.judge.apiKeySecret. */
  public static final String ENV_JUDGE_API_KEY = "FINETUNE_JUDGE_API_KEY";
  /**
   * Environment of hub downloads, the names huggingface_hub reads, in a Pod and in a local run alike: the hub's
   * address (default https://huggingface.co; a mirror or a private hub), the token (in a Pod from
   * spec.model.hubTokenSecret), and the cache directory in the hub's layout (in a Pod the shared cache claim at
   * {@link #HUB_CACHE_MOUNT}; unset: the run folder). Proxies are the standard HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
   */
  public static final String ENV_HF_ENDPOINT = "HF_ENDPOINT";
  public static final String ENV_HF_TOKEN = "HF_TOKEN";
  public static final String ENV_HF_HUB_CACHE = "HF_HUB_CACHE";
  public static final String ENV_HTTPS_PROXY = "HTTPS_PROXY";
  public static final String ENV_HTTP_PROXY = "HTTP_PROXY";
  public static final String ENV_NO_PROXY = "NO_PROXY";
  /** Where the operator mounts the shared hub cache claim (spec.model.cacheClaim or its default), read-write. */
  public static final String HUB_CACHE_MOUNT = "/hub-cache";
  /** The /progress phase while the trainer downloads from the hub; its message says what and how far. */
  public static final String PHASE_DOWNLOADING = "Downloading";
  /**
   * Environment, for tests only (inert unless set): hold points, comma-separated ({@code epoch-E-step-K},
   * {@code epoch-E-end}, {@code checkpoint-NAME}), where the trainer writes {@code POINT.held} into
   * {@link #TEST_HOLD_DIR} and waits for {@code POINT.release} there (or a stop signal), so a test can interrupt a
   * run at the moment it needs whatever the machine's speed. Never set by the operator.
   */
  public static final String TEST_HOLD_AT = "FINETUNE_TEST_HOLD_AT";
  public static final String TEST_HOLD_DIR = "FINETUNE_TEST_HOLD_DIR";
  public static final String TEST_HELD_SUFFIX = ".held";
  public static final String TEST_RELEASE_SUFFIX = ".release";
  /** Kubernetes caps a termination message at 4096 bytes. */
  public static final int TERMINATION_MESSAGE_LIMIT = 4096;

  /** Files in the run directory. */
  public static final String CHECKPOINTS_DIR = "checkpoints";
  public static final String BEST_DIR = "best";
  /** A LoRA run's adapter (PEFT layout) of the best epoch; best/ then holds the merged full model. */
  public static final String ADAPTER_DIR = "adapter";
  public static final String HISTORY_FILE = "history.jsonl";
  public static final String RESPONSES_FILE = "responses.jsonl";
  public static final String SUMMARY_FILE = "summary.json";
  public static final String PLOT_FILE = "loss.svg";

  /** Exit codes. The Job's pod failure policy fails the Job at once on the "bad job" codes. */
  public static final class ExitCodes {
    private ExitCodes() {}

    /** Training finished (all epochs, or early stopped) and results are written. */
    public static final int SUCCEEDED = 0;
    /** Unexpected error (out of memory, I/O): retry, resuming from the latest checkpoint. */
    public static final int CRASHED = 1;
    /** Invalid spec or data: retrying cannot help. */
    public static final int BAD_JOB = 3;
    /** The loss became NaN or infinite: retrying from the same checkpoint would diverge again. */
    public static final int DIVERGED = 4;
    /** SIGTERM (eviction, preemption, suspend): a checkpoint was saved; retry resumes from it. */
    public static final int INTERRUPTED = 75;

    /** Exit codes on which the Job must not retry. */
    public static final int[] DO_NOT_RETRY = {BAD_JOB, DIVERGED};
  }
}
