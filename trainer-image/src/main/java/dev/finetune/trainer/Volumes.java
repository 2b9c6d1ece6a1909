package dev.finetune.trainer;

import dev.finetune.api.trainer.TrainerContract;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Where a relative path a job names (spec.model.path, spec.dataset.path or files) is read: on the claim's volume
 * where the Pod mounts it, else beside the job file. A local run names the mapping once, so a job written for a
 * cluster does not silently read the job's folder.
 */
public final class Volumes {
  private static final Set<String> TOLD = ConcurrentHashMap.newKeySet();

  private Volumes() {}

  /** The model volume's path for {@code path}; {@code field} names the claim in messages (spec.model). */
  public static Path model(String path, String claimName, Path jobDir) {
    return resolve("spec.model", path, claimName, TrainerContract.ENV_MODEL_DIR, TrainerContract.MODEL_MOUNT, jobDir);
  }

  /** The data volume's path for {@code path}. */
  public static Path data(String path, String claimName, Path jobDir) {
    return resolve("spec.dataset", path, claimName, TrainerContract.ENV_DATA_DIR, TrainerContract.DATA_MOUNT, jobDir);
  }

  static Path resolve(String field, String path, String claimName, String env, String defaultMount, Path jobDir) {
    Path p = Path.of(path);
    if (p.isAbsolute()) {
      return p;
    }
    Path mount = TrainerContract.mountDir(env, defaultMount);
    if (claimName != null && Files.isDirectory(mount)) {
      return mount.resolve(p);
    }
    Path beside = jobDir.resolve(p).normalize();
    if (claimName != null && TOLD.add(field)) {
      System.out.println(field + ".claimName '" + claimName + "': no volume is mounted at " + mount + " here, so "
          + path + " is read beside the job file (" + beside + "). To read a copy of the volume instead, set " + env
          + " to its folder");
    }
    return beside;
  }
}
