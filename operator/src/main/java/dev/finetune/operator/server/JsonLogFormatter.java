package dev.finetune.operator.server;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Instant;
import java.util.logging.Formatter;
import java.util.logging.LogRecord;

/** One JSON object a line: ts, level, logger, thread, msg and error (stack trace), for log collectors. */
public class JsonLogFormatter extends Formatter {
  @Override
  public String format(LogRecord r) {
    StringBuilder sb = new StringBuilder(256);
    sb.append("{\"ts\":\"").append(Instant.ofEpochMilli(r.getMillis())).append('"');
    sb.append(",\"level\":\"").append(level(r)).append('"');
    sb.append(",\"logger\":");
    quote(sb, r.getLoggerName());
    sb.append(",\"thread\":");
    quote(sb, Thread.currentThread().getName());
    sb.append(",\"msg\":");
    quote(sb, formatMessage(r));
    if (r.getThrown() != null) {
      StringWriter sw = new StringWriter();
      r.getThrown().printStackTrace(new PrintWriter(sw));
      sb.append(",\"error\":");
      quote(sb, sw.toString());
    }
    return sb.append("}\n").toString();
  }

  private static String level(LogRecord r) {
    return switch (r.getLevel().getName()) {
      case "SEVERE" -> "ERROR";
      case "WARNING" -> "WARN";
      case "FINE", "FINER" -> "DEBUG";
      case "FINEST" -> "TRACE";
      default -> r.getLevel().getName();
    };
  }

  static void quote(StringBuilder sb, String s) {
    if (s == null) {
      sb.append("null");
      return;
    }
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        default -> {
          if (c < 0x20) {
            sb.append(String.format("\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
    }
    sb.append('"');
  }
}
