package dev.finetune.trainer.hub;

/** What a hub repository holds; models and datasets differ only in their addresses and cache folders. */
public enum RepoKind {
  MODEL("models", ""),
  DATASET("datasets", "datasets/");

  private final String folderPrefix;
  private final String urlPrefix;

  RepoKind(String folderPrefix, String urlPrefix) {
    this.folderPrefix = folderPrefix;
    this.urlPrefix = urlPrefix;
  }

  /** models or datasets: the cache's folder prefix and the API's path segment. */
  String folderPrefix() {
    return folderPrefix;
  }

  /** Before ORG/NAME in a resolve address: nothing for models, datasets/ for datasets. */
  String urlPrefix() {
    return urlPrefix;
  }
}
