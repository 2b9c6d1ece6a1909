package dev.finetune.trainer.hub;

/** Hears how a download goes, for /progress and the job's status; the console gets the same lines. */
@FunctionalInterface
public interface DownloadListener {
  DownloadListener NONE = (message, finished) -> {};

  /** {@code message} says what is being downloaded, how far and how fast; {@code finished} once it is whole. */
  void onDownload(String message, boolean finished);

  /** {@code revision} of {@code repo} is {@code commit}, for the run's record. */
  default void onResolved(RepoKind kind, String repo, String revision, String commit) {}
}
