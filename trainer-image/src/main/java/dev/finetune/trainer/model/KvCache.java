package dev.finetune.trainer.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import java.util.HashMap;
import java.util.Map;

/**
 * Keys and values of every layer for the tokens seen so far ({@link CausalLm#forwardCached}): decoding then computes
 * only the new token's row instead of the whole sequence again. Its arrays live on {@code manager}.
 */
public final class KvCache {
  private final NDManager manager;
  private final Map<Integer, NDArray> keys = new HashMap<>();
  private final Map<Integer, NDArray> values = new HashMap<>();
  private int length;

  public KvCache(NDManager manager) {
    this.manager = manager;
  }

  /** Tokens cached so far. */
  public int length() {
    return length;
  }

  /** Appends a layer's new keys [B, heads, n, hd] and returns all of them so far. */
  NDArray keys(int layer, NDArray fresh) {
    return append(keys, layer, fresh);
  }

  /** Appends a layer's new values [B, heads, n, hd] and returns all of them so far. */
  NDArray values(int layer, NDArray fresh) {
    return append(values, layer, fresh);
  }

  /** Counts the {@code n} tokens whose keys and values every layer has appended. */
  void advance(long n) {
    length += (int) n;
  }

  private NDArray append(Map<Integer, NDArray> store, int layer, NDArray fresh) {
    NDArray old = store.get(layer);
    NDArray all = old == null ? fresh : old.concat(fresh, 2);
    NDScope.unregister(all);
    all.attach(manager);
    store.put(layer, all);
    if (old != null && old != all) {
      old.close();
    }
    return all;
  }
}
