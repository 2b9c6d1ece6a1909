package dev.finetune.trainer.data;

import dev.finetune.api.DatasetSpec;
import dev.finetune.trainer.BadDataException;
import dev.finetune.trainer.BadJobException;
import dev.finetune.trainer.hub.DownloadListener;
import dev.finetune.trainer.hub.Hub;
import dev.finetune.trainer.hub.HubSettings;
import dev.finetune.trainer.hub.RepoKind;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Which files of a hub dataset a job reads: the ones it names, or every Parquet file of one split of the hub's
 * Parquet conversion (branch {@code refs/convert/parquet}, laid out {@code CONFIG/SPLIT/0000.parquet}, or
 * {@code CONFIG/NAME-SPLIT.parquet} in older conversions).
 */
final class HubDatasets {
  static final String PARQUET_BRANCH = "refs/convert/parquet";
  private static final Pattern OLD_LAYOUT = Pattern.compile("[^/]+/[^/]*?-([^-/]+?)(-\\d{5}-of-\\d{5})?\\.parquet");

  private HubDatasets() {}

  /** The downloaded files, in order, and how the run names its data. */
  record Files(List<Path> paths, String source) {}

  static Files fetch(DatasetSpec.HubDataset spec, HubSettings settings, Path outputDir, DownloadListener listener)
      throws IOException {
    String revision = spec.revision == null ? "main" : spec.revision;
    List<String> names;
    Hub hub;
    if (spec.files != null) {
      hub = new Hub(settings, settings.cacheOr(outputDir.resolve("data-cache")), RepoKind.DATASET, spec.repo, revision,
          listener);
      names = spec.files;
      for (String f : names) {
        if (!(f.endsWith(".json") || f.endsWith(".jsonl") || f.endsWith(".parquet"))) {
          throw new BadJobException("spec.dataset.hub.files: '" + f + "' is not .json, .jsonl or .parquet; the trainer"
              + " reads JSON (an array of records), JSON Lines and Parquet");
        }
      }
    } else {
      if (!revision.equals("main")) {
        throw new BadJobException("spec.dataset.hub.revision is '" + revision + "' with split: the hub converts only"
            + " the main branch to Parquet; name the revision's files with spec.dataset.hub.files instead");
      }
      hub = new Hub(settings, settings.cacheOr(outputDir.resolve("data-cache")), RepoKind.DATASET, spec.repo,
          PARQUET_BRANCH, listener);
      String config = spec.config == null ? "default" : spec.config;
      List<String> all = hub.list();
      names = split(all, config, spec.split);
      if (names.isEmpty()) {
        throw new BadDataException("dataset " + spec.repo + " has no split '" + spec.split + "' in config '" + config
            + "' in its Parquet conversion; it has: " + String.join(", ", splits(all))
            + " (set spec.dataset.hub.config and split to one of them)");
      }
    }
    List<Path> paths = new ArrayList<>();
    for (String f : names) {
      paths.add(hub.file(f));
    }
    return new Files(paths, "hub dataset " + spec.repo + "@" + hub.revision() + " (commit " + hub.commit() + "): "
        + (names.size() <= 3 ? String.join(", ", names) : names.get(0) + " and " + (names.size() - 1) + " more"));
  }

  /** The Parquet files of {@code config}'s {@code split}, in name order. */
  static List<String> split(List<String> files, String config, String split) {
    TreeSet<String> out = new TreeSet<>();
    for (String f : files) {
      if (!f.startsWith(config + "/") || !f.endsWith(".parquet")) {
        continue;
      }
      if (f.startsWith(config + "/" + split + "/")) {
        out.add(f);
      } else {
        Matcher m = OLD_LAYOUT.matcher(f);
        if (m.matches() && m.group(1).equals(split) && f.indexOf('/', config.length() + 1) < 0) {
          out.add(f);
        }
      }
    }
    return new ArrayList<>(out);
  }

  /** CONFIG/SPLIT of every Parquet file, for the message that lists them. */
  static List<String> splits(List<String> files) {
    TreeSet<String> out = new TreeSet<>();
    for (String f : files) {
      String[] parts = f.split("/");
      if (!f.endsWith(".parquet") || parts.length < 2) {
        continue;
      }
      if (parts.length >= 3) {
        out.add(parts[0] + "/" + parts[1]);
      } else {
        Matcher m = OLD_LAYOUT.matcher(f);
        if (m.matches()) {
          out.add(parts[0] + "/" + m.group(1));
        }
      }
    }
    return new ArrayList<>(out);
  }
}
