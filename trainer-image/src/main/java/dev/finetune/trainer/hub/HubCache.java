package dev.finetune.trainer.hub;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The Hugging Face cache layout, so that {@code huggingface-cli download} can fill it beforehand and other tools read
 * what the trainer put there:
 * <pre>
 * ROOT/models--ORG--NAME/refs/REVISION              the commit REVISION resolved to
 *                       /blobs/ETAG                 a file's bytes, named by its checksum (sha256 for large files)
 *                       /snapshots/COMMIT/PATH      a link to its blob
 *                       /.no_exist/COMMIT/PATH      an optional file the hub does not have at COMMIT
 * ROOT/.locks/models--ORG--NAME/ETAG.lock           held while one process writes that blob
 * </pre>
 * Datasets live under {@code datasets--ORG--NAME}. A blob is written to {@code ETAG.incomplete}, which a later try
 * resumes, and renamed when it is whole: readers never see half a file, and two jobs filling one cache at once
 * wait for each other's blob instead of writing it twice.
 */
final class HubCache {
  /** Locks held by this process: a file lock is per process, so threads of one trainer queue here first. */
  private static final ConcurrentHashMap<Path, ReentrantLock> LOCAL = new ConcurrentHashMap<>();

  private final Path root;
  private final Path repoDir;
  private final String folder;

  HubCache(Path root, RepoKind kind, String repo) {
    this.root = root;
    this.folder = kind.folderPrefix() + "--" + repo.replace("/", "--");
    this.repoDir = root.resolve(folder);
  }

  Path repoDir() {
    return repoDir;
  }

  /** The commit the cache says {@code revision} is, if it has resolved it before. */
  Optional<String> ref(String revision) throws IOException {
    Path f = repoDir.resolve("refs").resolve(revision);
    return Files.isRegularFile(f) ? Optional.of(Files.readString(f, StandardCharsets.UTF_8).strip()) : Optional.empty();
  }

  void writeRef(String revision, String commit) throws IOException {
    Path f = repoDir.resolve("refs").resolve(revision);
    if (ref(revision).filter(commit::equals).isEmpty()) {
      writeAtomically(f, commit);
    }
  }

  Path snapshot(String commit) {
    return repoDir.resolve("snapshots").resolve(commit);
  }

  Path blob(String etag) {
    return repoDir.resolve("blobs").resolve(etag);
  }

  Path incomplete(String etag) {
    return repoDir.resolve("blobs").resolve(etag + ".incomplete");
  }

  boolean knownMissing(String commit, String path) {
    return Files.exists(repoDir.resolve(".no_exist").resolve(commit).resolve(path));
  }

  void rememberMissing(String commit, String path) throws IOException {
    Path f = repoDir.resolve(".no_exist").resolve(commit).resolve(path);
    Files.createDirectories(f.getParent());
    try {
      Files.createFile(f);
    } catch (FileAlreadyExistsException e) {
      // another job remembered it first
    }
  }

  /** Puts {@code snapshots/COMMIT/PATH} in place as a relative link to the blob, or a copy where links fail. */
  Path link(String commit, String path, String etag) throws IOException {
    Path entry = snapshot(commit).resolve(path);
    if (Files.exists(entry)) {
      return entry;
    }
    Files.createDirectories(entry.getParent());
    Path blob = blob(etag);
    Path tmp = beside(entry);
    Files.deleteIfExists(tmp);
    try {
      Files.createSymbolicLink(tmp, entry.getParent().relativize(blob));
    } catch (UnsupportedOperationException | IOException e) {
      Files.copy(blob, tmp, StandardCopyOption.REPLACE_EXISTING);
    }
    Files.move(tmp, entry, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    return entry;
  }

  /** Runs {@code work} holding the blob's lock, against other threads and other processes (jobs) alike. */
  <T> T locked(String etag, IoSupplier<T> work) throws IOException {
    Path lockFile = root.resolve(".locks").resolve(folder).resolve(etag + ".lock");
    Files.createDirectories(lockFile.getParent());
    ReentrantLock local = LOCAL.computeIfAbsent(lockFile.toAbsolutePath(), p -> new ReentrantLock());
    local.lock();
    try (FileChannel ch = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock held = ch.lock()) {
      return work.get();
    } finally {
      local.unlock();
    }
  }

  interface IoSupplier<T> {
    T get() throws IOException;
  }

  private static void writeAtomically(Path f, String text) throws IOException {
    Files.createDirectories(f.getParent());
    Path tmp = beside(f);
    Files.writeString(tmp, text, StandardCharsets.UTF_8);
    Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  private static final java.util.concurrent.atomic.AtomicLong WRITES = new java.util.concurrent.atomic.AtomicLong();

  /**
   * A temporary name next to {@code f}, renamed onto it once written: its own for every write, so that jobs in other
   * processes and threads of this one that write the same entry at once never rename each other's file.
   */
  static Path beside(Path f) {
    return f.resolveSibling(f.getFileName() + "." + ProcessHandle.current().pid() + "-" + WRITES.incrementAndGet() + ".tmp");
  }
}
