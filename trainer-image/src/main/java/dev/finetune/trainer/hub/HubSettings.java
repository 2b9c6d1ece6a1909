package dev.finetune.trainer.hub;

import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.BadJobException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.SocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Where the hub is and how to reach it, from the names every Hugging Face tool reads: {@code HF_ENDPOINT} (a mirror
 * or private hub), {@code HF_TOKEN} (else the token file {@code huggingface-cli login} writes), {@code HF_HUB_CACHE}
 * (else {@code HF_HOME/hub}), and {@code HTTPS_PROXY}, {@code HTTP_PROXY}, {@code NO_PROXY}, which Java's HTTP
 * client ignores unless it is given a proxy selector.
 *
 * <p>The token is held here and in {@link HubClient} only: {@link #toString()} says whether there is one, never what.
 */
public final class HubSettings {
  public static final String DEFAULT_ENDPOINT = "https://huggingface.co";

  final URI endpoint;
  final String token;
  /** The cache the environment names; null when it names none (the caller picks, e.g. the run folder). */
  final Path cache;
  final ProxySelector proxies;

  HubSettings(URI endpoint, String token, Path cache, ProxySelector proxies) {
    this.endpoint = endpoint;
    this.token = token;
    this.cache = cache;
    this.proxies = proxies;
  }

  /** From this process's environment. */
  public static HubSettings fromEnvironment() {
    return from(System.getenv());
  }

  public static HubSettings from(Map<String, String> env) {
    String e = blankToNull(env.get(TrainerContract.ENV_HF_ENDPOINT));
    URI endpoint = URI.create((e == null ? DEFAULT_ENDPOINT : e).replaceAll("/+$", ""));
    if (endpoint.getScheme() == null || !endpoint.getScheme().matches("https?") || endpoint.getHost() == null) {
      throw new BadJobException("HF_ENDPOINT is '" + e + "'; it must be an http(s) address such as "
          + DEFAULT_ENDPOINT + " or your mirror's, e.g. https://hf-mirror.example.com");
    }
    Path home = blankToNull(env.get("HF_HOME")) != null ? Path.of(env.get("HF_HOME"))
        : env.get("HOME") == null ? null : Path.of(env.get("HOME"), ".cache", "huggingface");
    String token = blankToNull(env.get(TrainerContract.ENV_HF_TOKEN));
    if (token == null) {
      token = tokenFile(blankToNull(env.get("HF_TOKEN_PATH")) != null ? Path.of(env.get("HF_TOKEN_PATH"))
          : home == null ? null : home.resolve("token"));
    }
    Path cache = blankToNull(env.get(TrainerContract.ENV_HF_HUB_CACHE)) != null ? Path.of(env.get(TrainerContract.ENV_HF_HUB_CACHE))
        : blankToNull(env.get("HF_HOME")) != null ? Path.of(env.get("HF_HOME"), "hub") : null;
    return new HubSettings(endpoint, token, cache, proxies(env));
  }

  /** The same settings with another endpoint (tests, and a job that names its own hub). */
  public HubSettings withEndpoint(URI endpoint) {
    return new HubSettings(endpoint, token, cache, proxies);
  }

  /** The same settings with another token; null: none. */
  public HubSettings withToken(String token) {
    return new HubSettings(endpoint, token, cache, proxies);
  }

  /** The same settings with another cache folder. */
  public HubSettings withCache(Path cache) {
    return new HubSettings(endpoint, token, cache, proxies);
  }

  public URI endpoint() {
    return endpoint;
  }

  public boolean hasToken() {
    return token != null;
  }

  /** The cache the environment names (HF_HUB_CACHE, else HF_HOME/hub), or {@code fallback}. */
  public Path cacheOr(Path fallback) {
    return cache != null ? cache : fallback;
  }

  @Override
  public String toString() {
    return "hub " + endpoint + (token == null ? " without a token" : " with a token") + (cache == null ? "" : ", cache " + cache);
  }

  private static String tokenFile(Path file) {
    if (file == null || !Files.isRegularFile(file)) {
      return null;
    }
    try {
      return blankToNull(Files.readString(file, StandardCharsets.UTF_8).strip());
    } catch (IOException e) {
      return null; // an unreadable token file is as good as none: a gated repository says how to give one
    }
  }

  private static String blankToNull(String s) {
    return s == null || s.isBlank() ? null : s.strip();
  }

  /**
   * The proxies this process's environment names, for every HTTP client of the trainer (dataset URLs, the judge),
   * not only the hub's.
   */
  public static ProxySelector environmentProxies() {
    return proxies(System.getenv());
  }

  /** HTTPS_PROXY / HTTP_PROXY (either case) by scheme, none for hosts NO_PROXY matches. */
  static ProxySelector proxies(Map<String, String> env) {
    Proxy https = proxy(either(env, TrainerContract.ENV_HTTPS_PROXY));
    Proxy http = proxy(either(env, TrainerContract.ENV_HTTP_PROXY));
    String noProxy = either(env, TrainerContract.ENV_NO_PROXY);
    List<String> exempt = noProxy == null ? List.of()
        : Arrays.stream(noProxy.split(",")).map(String::strip).filter(s -> !s.isEmpty()).map(s -> s.toLowerCase(Locale.ROOT)).toList();
    return new ProxySelector() {
      @Override
      public List<Proxy> select(URI uri) {
        Proxy p = "https".equalsIgnoreCase(uri.getScheme()) ? https : http;
        return List.of(p == null || exempt(uri.getHost(), exempt) ? Proxy.NO_PROXY : p);
      }

      @Override
      public void connectFailed(URI uri, SocketAddress sa, IOException ioe) {}
    };
  }

  /**
   * NO_PROXY as curl and requests read it: {@code *}, a host, or a domain that also covers its subdomains; and this
   * machine's own addresses, which no proxy can reach.
   */
  static boolean exempt(String host, List<String> noProxy) {
    if (host == null) {
      return false;
    }
    String h = host.toLowerCase(Locale.ROOT).replaceAll("^\\[|\\]$", "");
    if (h.equals("localhost") || h.startsWith("127.") || h.equals("::1")) {
      return true;
    }
    for (String rule : noProxy) {
      String r = rule.replaceAll(":\\d+$", "").replaceAll("^\\*?\\.", "");
      if (rule.equals("*") || h.equals(r) || h.endsWith("." + r)) {
        return true;
      }
    }
    return false;
  }

  private static String either(Map<String, String> env, String name) {
    String v = blankToNull(env.get(name));
    return v != null ? v : blankToNull(env.get(name.toLowerCase(Locale.ROOT)));
  }

  private static Proxy proxy(String address) {
    if (address == null) {
      return null;
    }
    URI u = URI.create(address.contains("://") ? address : "http://" + address);
    if (u.getHost() == null) {
      throw new BadJobException("proxy address '" + address + "' (HTTPS_PROXY or HTTP_PROXY) has no host; write it as"
          + " http://HOST:PORT");
    }
    int port = u.getPort() != -1 ? u.getPort() : "https".equals(u.getScheme()) ? 443 : 80;
    return new Proxy(Proxy.Type.HTTP, new InetSocketAddress(u.getHost(), port));
  }
}
