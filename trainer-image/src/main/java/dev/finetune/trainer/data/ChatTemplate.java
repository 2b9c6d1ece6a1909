package dev.finetune.trainer.data;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.ExtendedSyntaxBuilder;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.el.TruthyTypeConverter;
import com.hubspot.jinjava.el.ext.AbsOperator;
import com.hubspot.jinjava.el.ext.AdditionOperator;
import com.hubspot.jinjava.el.ext.AstRangeBracket;
import com.hubspot.jinjava.el.ext.ExtendedParser;
import com.hubspot.jinjava.el.ext.NamedParameterOperator;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.Context.Library;
import com.hubspot.jinjava.interpret.InterpreterFactory;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.exptest.ExpTest;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.lib.tag.ForTag;
import com.hubspot.jinjava.lib.tag.IfTag;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.objects.Namespace;
import com.hubspot.jinjava.objects.SafeString;
import com.hubspot.jinjava.objects.date.StrftimeFormatter;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;
import com.hubspot.jinjava.tree.parse.TagToken;
import com.hubspot.jinjava.util.HasObjectTruthValue;
import com.hubspot.jinjava.util.ObjectIterator;
import com.hubspot.jinjava.util.ObjectTruthValue;
import java.beans.FeatureDescriptor;
import java.math.BigDecimal;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.StringJoiner;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import jinjava.de.odysseus.el.ExpressionFactoryImpl;
import jinjava.de.odysseus.el.tree.Bindings;
import jinjava.de.odysseus.el.tree.TreeBuilder;
import jinjava.de.odysseus.el.tree.impl.Builder;
import jinjava.de.odysseus.el.tree.impl.Parser.ExtensionPoint;
import jinjava.de.odysseus.el.tree.impl.Parser;
import jinjava.de.odysseus.el.tree.impl.Scanner.Symbol;
import jinjava.de.odysseus.el.tree.impl.Scanner;
import jinjava.de.odysseus.el.tree.impl.ast.AstBinary;
import jinjava.de.odysseus.el.tree.impl.ast.AstBracket;
import jinjava.de.odysseus.el.tree.impl.ast.AstDot;
import jinjava.de.odysseus.el.tree.impl.ast.AstNode;
import jinjava.de.odysseus.el.tree.impl.ast.AstNumber;
import jinjava.de.odysseus.el.tree.impl.ast.AstParameters;
import jinjava.de.odysseus.el.tree.impl.ast.AstUnary;
import jinjava.javax.el.CompositeELResolver;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELException;
import jinjava.javax.el.ELResolver;
import jinjava.javax.el.ExpressionFactory;

/**
 * A model's chat template (Jinja), rendered as Hugging Face transformers renders it
 * (transformers.utils.chat_template_utils: an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop
 * controls, the {@code generation} tag, {@code raise_exception}, {@code strftime_now} and a json.dumps
 * {@code tojson}), on jinjava, with the Python Jinja semantics that chat templates rely on put back where jinjava
 * differs: each nested class says which.
 *
 * <p>Still unlike Python, and used by no common chat template: an attribute of an undefined value renders empty
 * (Jinja raises), {@code loop.previtem}/{@code nextitem} and a macro's {@code caller} are missing, {@code str * int},
 * the {@code min}/{@code max} filters, {@code round} (Python rounds half to even) and {@code sum} (gives a float), and
 * tuples print as lists. jinjava makes an interpreter per render: 4 threads sharing one instance rendered alike.
 */
public final class ChatTemplate {

  /**
   * The rendered text and the [start, end) offsets of each {@code {% generation %}} block in it, as indices into
   * the Java String (UTF-16 units; Python's count code points, so they differ after a character outside the BMP).
   */
  public record Rendered(String text, List<int[]> generationSpans) {}

  /**
   * Python's None in the data (a message's null content, tools=None): defined, falsy, printed "None", equal to
   * none. jinjava's null is Jinja's undefined, so `content is defined` would be false for a null content.
   */
  static final class PyNone implements HasObjectTruthValue {
    static final PyNone NONE = new PyNone();

    @Override
    public boolean getObjectTruthValue() {
      return false;
    }

    @Override
    public String toString() {
      return "None";
    }
  }

  /** A template that raised (raise_exception) or that Jinja could not parse or evaluate. */
  public static final class TemplateException extends RuntimeException {
    public TemplateException(String message, Throwable cause) {
      super(message, cause);
    }
  }


  private final String template;
  private final Map<String, String> specialTokens;
  private final Jinjava jinjava = newJinjava();

  private ChatTemplate(String template, Map<String, String> specialTokens) {
    // Jinja's lexer turns \r\n and \r into \n and drops one trailing newline (keep_trailing_newline=False).
    String t = template.replace("\r\n", "\n").replace('\r', '\n');
    this.template = lstripBlocks(t.endsWith("\n") ? t.substring(0, t.length() - 1) : t);
    this.specialTokens = Map.copyOf(specialTokens);
  }

  /** specialTokens: bos_token, eos_token, ... as tokenizer_config.json names them; they become template variables. */
  public static ChatTemplate of(String template, Map<String, String> specialTokens) {
    return new ChatTemplate(template, specialTokens);
  }

  /** extra: tools, documents, date_string, ...: any keyword argument of apply_chat_template (they override). */
  public Rendered render(List<Map<String, Object>> messages, boolean addGenerationPrompt, Map<String, Object> extra) {
    Map<String, Object> vars = new HashMap<>(specialTokens);
    vars.put("messages", messages);
    vars.put("tools", null);
    vars.put("documents", null);
    vars.put("add_generation_prompt", addGenerationPrompt);
    vars.putAll(extra);
    vars.replaceAll((k, v) -> fromJava(v));
    vars.put("none", PyNone.NONE); // Jinja's literal (jinjava has none: an undefined name)
    vars.put("None", PyNone.NONE);
    RenderResult result = jinjava.renderForResult(template, vars);
    TemplateError fatal = null;
    for (TemplateError e : result.getErrors()) {
      for (Throwable c = e.getException(); c != null; c = c.getCause()) {
        if (c instanceof TemplateException raised) {
          throw new TemplateException(raised.getMessage(), raised); // raise_exception: the template's own message
        }
      }
      if (fatal == null && e.getSeverity() == TemplateError.ErrorType.FATAL) {
        fatal = e;
      }
    }
    if (fatal != null) {
      throw new TemplateException(fatal.getMessage(), fatal.getException());
    }
    return GenerationTag.spans(result.getOutput());
  }

  /** A copy with Python's None for null (see {@link PyNone}). */
  private static Object fromJava(Object v) {
    if (v == null) {
      return PyNone.NONE;
    } else if (v instanceof Map<?, ?> m) {
      Map<Object, Object> copy = new LinkedHashMap<>();
      m.forEach((k, x) -> copy.put(k, fromJava(x)));
      return copy;
    } else if (v instanceof Collection<?> c) {
      return c.stream().map(ChatTemplate::fromJava).collect(Collectors.toCollection(ArrayList::new));
    }
    return v;
  }

  private static Jinjava newJinjava() {
    JinjavaConfig config = JinjavaConfig.newBuilder()
        .withTrimBlocks(true)
        .withNestedInterpretationEnabled(false) // jinjava would render "{{ x }}" inside a message's content again
        .withDisabled(Map.of(Library.TAG, Set.of("do"))) // jinja2.ext.do is not among transformers' extensions
        .withElResolver(new CompositeELResolver() { // Python's str methods first, then jinjava's resolvers
          {
            add(new PyMethods());
            add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
          }
        })
        .withInterperterFactory(new InterpreterFactory() {
          @Override
          public JinjavaInterpreter newInstance(JinjavaInterpreter orig) {
            return new PyInterpreter(orig);
          }

          @Override
          public JinjavaInterpreter newInstance(Jinjava application, Context context, JinjavaConfig config) {
            return new PyInterpreter(application, context, config);
          }
        })
        .withLegacyOverrides(LegacyOverrides.newBuilder() // jinjava's switches towards Python Jinja
            .withUseNaturalOperatorPrecedence(true) // filters bind tighter than * and +, as in Jinja
            .withParseWhitespaceControlStrictly(true) // "{%-" only where the "-" touches the delimiter
            .withEvaluateMapKeys(true) // {key: v} reads the variable key, as Python does
            .withIterateOverMapKeys(true) // for k in dict: its keys
            .withKeepNullableLoopValues(true)
            .withUseTrimmingForNotesAndExpressions(true) // {{- x -}} trims
            .build())
        .build();
    Jinjava jinjava = new PyJinjava(config);
    jinjava.registerTag(new GenerationTag());
    jinjava.registerTag(new PyIfTag());
    jinjava.registerTag(new PyForTag());
    jinjava.registerFilter(new ToJson());
    jinjava.registerExpTest(new PyTest("none", v -> v == null || v == PyNone.NONE));
    // Python: strings and dicts are iterable and sequences too (jinjava: only lists)
    Predicate<Object> sized = v -> v instanceof String || v instanceof SafeString
        || v instanceof Collection || v instanceof Map || v instanceof Object[];
    jinjava.registerExpTest(new PyTest("iterable", sized));
    jinjava.registerExpTest(new PyTest("sequence", sized));
    // len(): a string's length in code points, as Python counts (a Java String counts UTF-16 units)
    jinjava.registerFilter(new PyFilter("length", (v, a, kw) -> v instanceof String || v instanceof SafeString
        ? v.toString().codePointCount(0, v.toString().length()) : v instanceof Map<?, ?> m ? m.size()
        : v instanceof Collection<?> c ? c.size() : 0));
    jinjava.registerFilter(new PyFilter("items", (v, a, kw) -> new ArrayList<>(((Map<?, ?>) v).entrySet())));
    jinjava.registerFilter(new PyFilter("trim", (v, a, kw) -> Py.strip(Py.str(v), arg(a, kw, 0, "chars"), true, true)));
    jinjava.registerFilter(new PyFilter("indent", ChatTemplate::indent));
    jinjava.registerFilter(new PyFilter("string", (v, a, kw) -> Py.repr(v, false)));
    jinjava.registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raiseException",
        String.class));
    jinjava.registerFunction(new ELFunctionDefinition("", "strftime_now", ChatTemplate.class, "strftimeNow",
        String.class));
    return jinjava;
  }

  /** transformers' raise_exception: a TemplateError with the template's message. */
  public static Object raiseException(String message) {
    throw new TemplateException(message, null);
  }

  /** Python's datetime.now().strftime(format): local time; %e is glibc's space-padded day (jinjava: unpadded). */
  public static String strftimeNow(String format) {
    ZonedDateTime now = ZonedDateTime.now();
    return StrftimeFormatter.format(now, format.replace("%e", String.format("%2d", now.getDayOfMonth())));
  }

  /**
   * Jinja's lstrip_blocks, done on the source: the spaces and tabs between a line's start and a block tag or comment
   * are dropped (jinjava's own option drops them before any tag, mid-line too: "a: {% if %}" lost its space).
   * Comments are removed here too, with Jinja's {@code {#- -#}} and trim_blocks (jinjava trimmed both sides).
   */
  private static final Pattern RAW = Pattern.compile("\\{%[-+]?\\s*raw\\s*[-+]?%}");
  private static final Pattern END_RAW = Pattern.compile("\\{%[-+]?\\s*endraw\\s*[-+]?%}");

  static String lstripBlocks(String src) {
    StringBuilder out = new StringBuilder(src.length());
    int lineStart = 0; // in out: after the last newline of the text since the last tag (-1: none); 0 at the start
    int i = 0;
    while (i < src.length()) {
      if (src.startsWith("{{", i) || src.startsWith("{%", i) || src.startsWith("{#", i)) {
        char kind = src.charAt(i + 1);
        if (kind != '{' && lineStart >= 0 && (i + 2 >= src.length() || src.charAt(i + 2) != '+')
            && out.substring(lineStart).chars().allMatch(Character::isWhitespace)) {
          out.setLength(lineStart);
        }
        int end = tagEnd(src, i, kind == '{' ? "}}" : kind == '%' ? "%}" : "#}", kind != '#');
        String tag = src.substring(i, end);
        if (kind == '#') { // a comment goes here, with Jinja's whitespace control (jinjava trims around it)
          if (tag.startsWith("{#-")) {
            out.setLength(Py.strip(out.toString(), null, false, true).length());
          }
          i = end;
          if (tag.endsWith("-#}")) {
            while (i < src.length() && Character.isWhitespace(src.charAt(i))) {
              i++;
            }
          } else if (i < src.length() && src.charAt(i) == '\n') {
            i++; // trim_blocks
            lineStart = out.length();
            continue;
          }
          lineStart = -1;
          continue;
        }
        out.append(tag);
        i = end;
        if (kind == '%' && RAW.matcher(tag).matches()) { // copied as it is, up to its endraw
          Matcher endRaw = END_RAW.matcher(src);
          int rawEnd = endRaw.find(i) ? endRaw.end() : src.length();
          out.append(src, i, rawEnd);
          i = rawEnd;
        }
        lineStart = -1;
      } else {
        char c = src.charAt(i++);
        out.append(c);
        if (c == '\n') {
          lineStart = out.length();
        }
      }
    }
    return out.toString();
  }

  /** The index after a tag's closing delimiter, skipping string literals in expressions and block tags. */
  private static int tagEnd(String src, int start, String close, boolean strings) {
    char quote = 0;
    for (int i = start + 2; i < src.length(); i++) {
      char c = src.charAt(i);
      if (quote != 0) {
        if (c == '\\') {
          i++;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (strings && (c == '\'' || c == '"')) {
        quote = c;
      } else if (src.startsWith(close, i)) {
        return i + 2;
      }
    }
    return src.length();
  }

  /** Jinja's indent(width=4, first=False, blank=False). */
  private static Object indent(Object value, Object[] args, Map<String, Object> kwargs) {
    Object width = arg(args, kwargs, 0, "width");
    String pad = width == null ? "    " : width instanceof Number n ? " ".repeat(n.intValue()) : width.toString();
    boolean first = truthy(arg(args, kwargs, 1, "first"));
    boolean blank = truthy(arg(args, kwargs, 2, "blank"));
    List<String> lines = Py.splitlines(Py.str(value) + "\n");
    StringBuilder out = new StringBuilder(lines.isEmpty() ? "" : lines.get(0));
    for (String line : lines.subList(Math.min(1, lines.size()), lines.size())) {
      out.append('\n').append(blank || !line.isEmpty() ? pad : "").append(line);
    }
    return first ? pad + out : out.toString();
  }

  private static Object arg(Object[] args, Map<String, Object> kwargs, int position, String name) {
    Object v = kwargs.containsKey(name) ? kwargs.get(name) : position < args.length ? args[position] : null;
    return v == PyNone.NONE ? null : v;
  }

  /** Python's truth: unlike jinjava's, the strings "false" and "False" are true (non-empty). */
  static boolean truthy(Object o) {
    if (o instanceof String || o instanceof SafeString) {
      return !o.toString().isEmpty();
    }
    return ObjectTruthValue.evaluate(o);
  }

  /**
   * {@code {% generation %}...{% endgeneration %}}: marks its output with two Unicode noncharacters, which
   * {@link #spans} removes while recording where they were (transformers' AssistantTracker records the same offsets).
   */
  static final class GenerationTag implements Tag {
    static final char START = '\uFDD0';
    static final char END = '\uFDD1';

    @Override
    public String getName() {
      return "generation";
    }

    @Override
    public String interpret(TagNode tagNode, JinjavaInterpreter interpreter) {
      StringBuilder out = new StringBuilder().append(START);
      for (Node child : tagNode.getChildren()) {
        out.append(child.render(interpreter).getValue());
      }
      return out.append(END).toString();
    }

    static Rendered spans(String marked) {
      StringBuilder text = new StringBuilder(marked.length());
      List<int[]> spans = new ArrayList<>();
      List<Integer> open = new ArrayList<>();
      for (int i = 0; i < marked.length(); i++) {
        char c = marked.charAt(i);
        if (c == START) {
          open.add(text.length());
        } else if (c == END) {
          spans.add(new int[] {open.remove(open.size() - 1), text.length()});
        } else {
          text.append(c);
        }
      }
      return new Rendered(text.toString(), spans);
    }
  }

  /** The `if` tag with Python's truth (jinjava's IfTag treats the string "false" as false). */
  static final class PyIfTag extends IfTag {
    @Override
    public boolean isPositiveIfElseNode(TagNode tagNode, JinjavaInterpreter interpreter) {
      return truthy(interpreter.resolveELExpression(tagNode.getHelpers(), tagNode.getLineNumber(),
          tagNode.getStartPosition()));
    }
  }

  /** `for` with Jinja's loop filter, {@code {% for x in xs if cond %}}: jinjava read `xs if cond` as a ternary. */
  static final class PyForTag extends ForTag {
    @Override
    public String interpretUnchecked(TagNode tagNode, JinjavaInterpreter interpreter) {
      var varsAndExpression = getLoopVarsAndExpression((TagToken) tagNode.getMaster());
      List<String> vars = varsAndExpression.getLeft();
      String expression = varsAndExpression.getRight();
      int cut = topLevelIf(expression);
      if (cut < 0) {
        return super.interpretUnchecked(tagNode, interpreter);
      }
      Object items = interpreter.resolveELExpression(expression.substring(0, cut), tagNode.getLineNumber());
      String condition = expression.substring(cut + 4);
      List<Object> kept = new ArrayList<>();
      for (Iterator<?> it = ObjectIterator.getLoop(items); it.hasNext(); ) {
        Object item = it.next();
        try (var scope = interpreter.enterScope()) {
          for (int v = 0; v < vars.size(); v++) {
            Object value = vars.size() == 1 ? item
                : item instanceof Map.Entry<?, ?> e ? (v == 0 ? e.getKey() : e.getValue())
                : item instanceof List<?> l && v < l.size() ? l.get(v) : null;
            interpreter.getContext().put(vars.get(v), value);
          }
          if (truthy(interpreter.resolveELExpression(condition, tagNode.getLineNumber()))) {
            kept.add(item);
          }
        }
      }
      return renderForCollection(tagNode, interpreter, vars, kept);
    }

    /** Where " if " stands outside brackets and strings (the loop's iterable cannot hold a bare ternary in Jinja). */
    private static int topLevelIf(String s) {
      int depth = 0;
      char quote = 0;
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        if (quote != 0) {
          if (c == '\\') {
            i++;
          } else if (c == quote) {
            quote = 0;
          }
        } else if (c == '\'' || c == '"') {
          quote = c;
        } else if ("([{".indexOf(c) >= 0) {
          depth++;
        } else if (")]}".indexOf(c) >= 0) {
          depth--;
        } else if (depth == 0 && Character.isWhitespace(c) && s.startsWith("if", i + 1) && i + 3 < s.length()
            && Character.isWhitespace(s.charAt(i + 3))) {
          return i;
        }
      }
      return -1;
    }
  }

  /** jinjava with Jinja's expression grammar and Python's truth in `not`, `and`, `or` and `x if c else y`. */
  static final class PyJinjava extends Jinjava {
    private final ExpressionFactory factory;

    PyJinjava(JinjavaConfig config) {
      super(config);
      Properties props = new Properties();
      props.setProperty(TreeBuilder.class.getName(), PyBuilder.class.getName());
      factory = new ExpressionFactoryImpl(props, new TruthyTypeConverter() {
        @Override
        protected Boolean coerceToBoolean(Object value) {
          return truthy(value);
        }
      });
    }

    @Override
    public ExpressionFactory getExpressionFactory() {
      return factory;
    }
  }

  /** Instantiated by JUEL by name. */
  public static final class PyBuilder extends ExtendedSyntaxBuilder {
    public PyBuilder() {}

    public PyBuilder(Feature... features) {
      super(features);
    }

    @Override
    protected Parser createParser(String expression) {
      return new PyParser(this, expression);
    }
  }

  /** Where jinjava's expression parser departs from Jinja's grammar. */
  static final class PyParser extends ExtendedParser {
    PyParser(Builder builder, String input) {
      super(builder, input);
    }

    /** Python's == and != (EL's would coerce: '1' == 1, and None is not null). */
    @Override
    protected AstBinary createAstBinary(AstNode left, AstNode right, AstBinary.Operator op) {
      if (op == AstBinary.EQ || op == AstBinary.NE) {
        boolean eq = op == AstBinary.EQ;
        return super.createAstBinary(left, right, (bindings, context, l, r) ->
            Py.eq(l.eval(bindings, context), r.eval(bindings, context)) == eq);
      }
      return super.createAstBinary(left, right, op);
    }

    /** Jinja's `not` binds looser than comparisons and tests: `not x is defined` is `not (x is defined)`. */
    @Override
    protected AstNode unary(boolean required) throws Scanner.ScanException, ParseException {
      if (getToken().getSymbol() == Symbol.NOT) {
        consumeToken();
        return createAstUnary(eq(true), AstUnary.NOT);
      }
      return super.unary(required);
    }

    /** jinjava scans `+` before a digit as unary plus, so `x+1` did not parse: here it is addition. */
    @Override
    protected AstNode add(boolean required) throws Scanner.ScanException, ParseException {
      AstNode v = mul(required);
      while (v != null) {
        Scanner.Token t = getToken();
        if (t.getSymbol() == Symbol.PLUS || t == AbsOperator.TOKEN) {
          consumeToken();
          v = createAstBinary(v, mul(true), AdditionOperator.OP);
        } else if (t.getSymbol() == Symbol.MINUS) {
          consumeToken();
          v = createAstBinary(v, mul(true), AstBinary.SUB);
        } else if (t.getSymbol() == Symbol.EXTENSION
            && getExtensionHandler(t).getExtensionPoint() == ExtensionPoint.ADD) {
          v = getExtensionHandler(consumeToken()).createAstNode(v, mul(true)); // ~
        } else {
          break;
        }
      }
      return v;
    }

    /** A parenthesised dict is not a tuple (jinjava counted its commas); `()` is the empty tuple. */
    @Override
    protected AstNode nonliteral() throws Scanner.ScanException, ParseException {
      if (getToken().getSymbol() != Symbol.LPAREN) {
        return super.nonliteral();
      }
      int depth = 0;
      for (int i = 0; ; i++) {
        Scanner.Token t = lookahead(i);
        Symbol s = t.getSymbol();
        boolean brace = s == Symbol.EXTENSION && ("{".equals(t.getImage()) || "}".equals(t.getImage()));
        if (s == Symbol.EOF || (depth == 0 && s == Symbol.RPAREN)) {
          if (i == 0) {
            return createAstTuple(params());
          }
          break;
        } else if (s == Symbol.LPAREN || s == Symbol.LBRACK || (brace && "{".equals(t.getImage()))) {
          depth++;
        } else if (s == Symbol.RPAREN || s == Symbol.RBRACK || brace) {
          depth--;
        } else if (depth == 0 && s == Symbol.COMMA) {
          return createAstTuple(params());
        }
      }
      consumeToken();
      AstNode v = expr(true);
      consumeToken(Symbol.RPAREN);
      return createAstNested(v);
    }

    /** Postfix: `.name`, `.name(...)`, `.0` (an integer attribute), `[i]`, and slices with a step (`[::-1]`). */
    @Override
    protected AstNode value() throws Scanner.ScanException, ParseException {
      boolean lvalue = true;
      AstNode v = nonliteral();
      if (v == null) {
        v = literal();
        if (v == null) {
          return null;
        }
        lvalue = false;
      }
      boolean strict = !context.isEnabled(Builder.Feature.NULL_PROPERTIES);
      while (true) {
        Scanner.Token t = getToken();
        if (t.getSymbol() == Symbol.DOT) {
          consumeToken();
          AstDot dot = createAstDot(v, consumeToken(Symbol.IDENTIFIER).getImage(), lvalue);
          v = getToken().getSymbol() == Symbol.LPAREN ? createAstMethod(dot, params()) : dot;
        } else if (t.getSymbol() == Symbol.FLOAT && t.getImage().matches("\\.\\d+")) {
          consumeToken();
          v = createAstBracket(v, new AstNumber(Long.parseLong(t.getImage().substring(1))), lvalue, strict);
        } else if (t.getSymbol() == Symbol.LBRACK) {
          consumeToken();
          AstNode start = expr(false);
          if (getToken().getSymbol() == Symbol.RBRACK) {
            consumeToken();
            AstBracket item = createAstBracket(v, start, lvalue, strict);
            v = getToken().getSymbol() == Symbol.LPAREN ? createAstMethod(item, params()) : item;
          } else {
            consumeToken(Symbol.COLON);
            AstNode stop = expr(false);
            AstNode step = null;
            if (getToken().getSymbol() == Symbol.COLON) {
              consumeToken();
              step = expr(false);
            }
            consumeToken(Symbol.RBRACK);
            v = new PySlice(v, start, stop, step);
          }
        } else {
          return v;
        }
      }
    }

    /** A keyword argument's value is a whole expression (jinjava: `n=x|length - 1` is `(n=x|length) - 1`). */
    @Override
    protected AstParameters params(Symbol left, Symbol right) throws Scanner.ScanException, ParseException {
      consumeToken(left);
      List<AstNode> nodes = new ArrayList<>();
      while (getToken().getSymbol() != right) { // Jinja allows a trailing comma
        if (getToken().getSymbol() == Symbol.IDENTIFIER && lookahead(0).getSymbol() == Symbol.EXTENSION
            && "=".equals(lookahead(0).getImage())) {
          AstNode name = identifier(consumeToken().getImage());
          consumeToken();
          nodes.add(getExtensionHandler(NamedParameterOperator.TOKEN).createAstNode(name, expr(true)));
        } else {
          nodes.add(expr(true));
        }
        if (getToken().getSymbol() != Symbol.COMMA) {
          break;
        }
        consumeToken();
      }
      consumeToken(right);
      return createAstParameters(nodes);
    }
  }

  private record PyTest(String getName, Predicate<Object> test) implements ExpTest {
    @Override
    public boolean evaluate(Object var, JinjavaInterpreter interpreter, Object... args) {
      return test.test(var);
    }
  }

  /** A filter with Python Jinja's semantics, given positional and keyword arguments. */
  private record PyFilter(String getName, PyFilterFn fn) implements Filter {
    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
      return fn.apply(var, args, Map.of());
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
      return fn.apply(var, args, kwargs);
    }
  }

  private interface PyFilterFn {
    Object apply(Object value, Object[] args, Map<String, Object> kwargs);
  }

  /**
   * Python's str methods (strip, split, startswith, title, ...), which jinjava would look up as Java methods, string
   * indexing, and the sandbox's refusal of list and dict mutation.
   */
  static final class PyMethods extends ELResolver {
    /** What jinja2's ImmutableSandboxedEnvironment refuses: the methods that change a list or a dict. */
    private static final Set<String> MUTATORS = Set.of("append", "extend", "insert", "pop", "remove", "clear", "sort",
        "reverse", "update", "popitem", "setdefault");

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] types, Object[] params) {
      if ((base instanceof List || base instanceof Map) && method != null && MUTATORS.contains(method.toString())
          && !(base instanceof Namespace)) {
        throw new TemplateException("access to attribute '" + method + "' of '" + (base instanceof List ? "list"
            : "dict") + "' object is unsafe.", null);
      }
      if (!(base instanceof String || base instanceof SafeString) || method == null) {
        return null;
      }
      Object result = Py.call(base.toString(), method.toString(), params == null ? new Object[0] : params);
      if (result != Py.NO_SUCH_METHOD) {
        context.setPropertyResolved(true);
      }
      return result;
    }

    /** s[i]: a one-character string, negative from the end (jinjava has no string indexing). */
    @Override
    public Object getValue(ELContext context, Object base, Object property) {
      // jinjava passes the index as a string
      if (!(base instanceof String s) || property == null || !property.toString().matches("-?\\d+")) {
        return null;
      }
      int[] cps = s.codePoints().toArray();
      int n = Integer.parseInt(property.toString());
      int i = n < 0 ? n + cps.length : n;
      context.setPropertyResolved(true);
      return i >= 0 && i < cps.length ? new String(cps, i, 1) : null;
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
      return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {}

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
      return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
      return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
      return null;
    }
  }

  /** Python's slice seq[start:stop:step] of a list or a string, negative and out-of-range bounds included. */
  static final class PySlice extends AstRangeBracket {
    private final AstNode stop;
    private final AstNode step;

    PySlice(AstNode base, AstNode start, AstNode stop, AstNode step) {
      super(base, start, stop, false, true, false);
      this.stop = stop;
      this.step = step;
    }

    @Override
    public Object eval(Bindings bindings, ELContext context) {
      Object base = prefix.eval(bindings, context);
      List<?> items = base instanceof String s ? s.codePoints().boxed().toList()
          : base instanceof Collection<?> c ? new ArrayList<>(c) : null;
      if (items == null) {
        throw new ELException("'" + Py.str(base) + "' is not a sequence");
      }
      int n = items.size();
      int by = bound(step, bindings, context, 1);
      if (by == 0) {
        throw new ELException("slice step cannot be zero");
      }
      int lo = by > 0 ? 0 : -1;
      int hi = by > 0 ? n : n - 1;
      int from = clamp(bound(property, bindings, context, by > 0 ? 0 : n - 1), n, lo, hi);
      int to = clamp(bound(stop, bindings, context, by > 0 ? n : -n - 1), n, lo, hi);
      List<Object> out = new ArrayList<>();
      for (int i = from; by > 0 ? i < to : i > to; i += by) {
        out.add(items.get(i));
      }
      if (base instanceof String) {
        StringBuilder sb = new StringBuilder();
        out.forEach(cp -> sb.appendCodePoint((Integer) cp));
        return sb.toString();
      }
      return out;
    }

    private static int bound(AstNode node, Bindings bindings, ELContext context, int absent) {
      Object v = node == null ? null : node.eval(bindings, context);
      return v == null ? absent : ((Number) v).intValue();
    }

    private static int clamp(int i, int n, int lo, int hi) {
      return Math.max(lo, Math.min(hi, i < 0 ? i + n : i));
    }
  }

  /** Prints as Python's str(): True/False, Python's float repr, and lists and dicts as Python's repr. */
  static final class PyInterpreter extends JinjavaInterpreter {
    PyInterpreter(Jinjava application, Context context, JinjavaConfig config) {
      super(application, context, config);
    }

    PyInterpreter(JinjavaInterpreter orig) {
      super(orig);
    }

    @Override
    public String getAsString(Object o) {
      return o == null ? "" : Py.repr(o, false); // null: jinjava's undefined, which Jinja prints as ""
    }
  }

  /** Python str semantics. */
  static final class Py {
    static final Object NO_SUCH_METHOD = new Object();

    static Object call(String s, String method, Object[] a) {
      Object a0 = a.length > 0 ? a[0] : null;
      return switch (method) {
        case "strip" -> strip(s, a0, true, true);
        case "lstrip" -> strip(s, a0, true, false);
        case "rstrip" -> strip(s, a0, false, true);
        case "split" -> split(s, a0 == null ? null : str(a0), a.length > 1 ? ((Number) a[1]).intValue() : -1);
        case "startswith" -> anyOf(a0).stream().anyMatch(s::startsWith);
        case "endswith" -> anyOf(a0).stream().anyMatch(s::endsWith);
        case "upper" -> s.toUpperCase(Locale.ROOT);
        case "lower" -> s.toLowerCase(Locale.ROOT);
        case "title" -> title(s);
        case "capitalize" -> s.isEmpty() ? s : s.substring(0, 1).toUpperCase(Locale.ROOT)
            + s.substring(1).toLowerCase(Locale.ROOT);
        case "replace" -> replace(s, str(a0), str(a[1]), a.length > 2 ? ((Number) a[2]).intValue() : -1);
        case "find" -> s.indexOf(str(a0));
        case "count" -> s.isEmpty() && str(a0).isEmpty() ? 1 : split(s, str(a0), -1).size() - 1;
        case "join" -> String.join(s, ((Collection<?>) a0).stream().map(Py::str).toList());
        case "splitlines" -> splitlines(s);
        case "removeprefix" -> s.startsWith(str(a0)) ? s.substring(str(a0).length()) : s;
        case "removesuffix" -> s.endsWith(str(a0)) ? s.substring(0, s.length() - str(a0).length()) : s;
        default -> NO_SUCH_METHOD;
      };
    }

    static String str(Object o) {
      return o == null ? "None" : o.toString();
    }

    static boolean eq(Object a, Object b) {
      a = a == PyNone.NONE ? null : a;
      b = b == PyNone.NONE ? null : b;
      if (a == null || b == null) {
        return a == b;
      }
      if (a instanceof Number x && b instanceof Number y) {
        return new BigDecimal(x.toString()).compareTo(new BigDecimal(y.toString())) == 0;
      }
      if ((a instanceof String || a instanceof SafeString) && (b instanceof String || b instanceof SafeString)) {
        return a.toString().equals(b.toString());
      }
      return a.equals(b);
    }

    /** Python's repr(o), or str(o) at the top (quoted: false): None, True, 1.5, 'text', [1, 'a'], {'k': 'v'}. */
    static String repr(Object o, boolean quoted) {
      if (o == null) {
        return "None";
      } else if (o instanceof Boolean b) {
        return b ? "True" : "False";
      } else if (o instanceof Double || o instanceof Float || o instanceof BigDecimal) {
        return ToJson.pyFloat(((Number) o).doubleValue());
      } else if (o instanceof Map<?, ?> m) {
        StringJoiner j = new StringJoiner(", ", "{", "}");
        m.forEach((k, v) -> j.add(repr(k, true) + ": " + repr(v, true)));
        return j.toString();
      } else if (o instanceof Collection<?> c) {
        StringJoiner j = new StringJoiner(", ", "[", "]");
        c.forEach(v -> j.add(repr(v, true)));
        return j.toString();
      } else if (o instanceof Map.Entry<?, ?> e) {
        return "(" + repr(e.getKey(), true) + ", " + repr(e.getValue(), true) + ")";
      } else if (!quoted || !(o instanceof String || o instanceof SafeString)) {
        return o.toString();
      }
      String s = o.toString();
      char q = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
      StringBuilder out = new StringBuilder().append(q);
      for (char c : s.toCharArray()) {
        switch (c) {
          case '\\' -> out.append("\\\\");
          case '\n' -> out.append("\\n");
          case '\r' -> out.append("\\r");
          case '\t' -> out.append("\\t");
          default -> out.append(c == q ? "\\" + c : c < 0x20 || c == 0x7f ? String.format("\\x%02x", (int) c)
              : String.valueOf(c));
        }
      }
      return out.append(q).toString();
    }

    private static List<String> anyOf(Object prefixes) {
      return prefixes instanceof Collection<?> c ? c.stream().map(Py::str).toList() : List.of(str(prefixes));
    }

    /** str.isspace(): Java's isWhitespace leaves out the no-break spaces and NEL. */
    static boolean isSpace(char c) {
      return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085';
    }

    static String strip(String s, Object chars, boolean left, boolean right) {
      String set = chars == null ? null : str(chars);
      int from = 0;
      int to = s.length();
      while (left && from < to && (set == null ? isSpace(s.charAt(from)) : set.indexOf(s.charAt(from)) >= 0)) {
        from++;
      }
      while (right && to > from && (set == null ? isSpace(s.charAt(to - 1)) : set.indexOf(s.charAt(to - 1)) >= 0)) {
        to--;
      }
      return s.substring(from, to);
    }

    /** str.split(sep=None, maxsplit=-1): no sep splits on runs of whitespace and drops empty ends. */
    static List<String> split(String s, String sep, int maxsplit) {
      List<String> out = new ArrayList<>();
      int i = 0;
      if (sep == null) {
        while (true) {
          while (i < s.length() && isSpace(s.charAt(i))) {
            i++;
          }
          if (i == s.length()) {
            return out;
          }
          if (maxsplit >= 0 && out.size() == maxsplit) {
            out.add(strip(s.substring(i), null, false, true));
            return out;
          }
          int j = i;
          while (j < s.length() && !isSpace(s.charAt(j))) {
            j++;
          }
          out.add(s.substring(i, j));
          i = j;
        }
      }
      for (int j; (maxsplit < 0 || out.size() < maxsplit) && (j = s.indexOf(sep, i)) >= 0; i = j + sep.length()) {
        out.add(s.substring(i, j));
      }
      out.add(s.substring(i));
      return out;
    }

    /** str.splitlines(): Python's line boundaries, which include \v, \f, \x1c-\x1e, \x85, \u2028, \u2029. */
    static List<String> splitlines(String s) {
      List<String> out = new ArrayList<>();
      int start = 0;
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        if ("\n\r\u000b\f\u001c\u001d\u001e\u0085\u2028\u2029".indexOf(c) >= 0) {
          out.add(s.substring(start, i));
          if (c == '\r' && i + 1 < s.length() && s.charAt(i + 1) == '\n') {
            i++;
          }
          start = i + 1;
        }
      }
      if (start < s.length()) {
        out.add(s.substring(start));
      }
      return out;
    }

    /** str.title(): a letter after a letter is lower-cased, any other letter upper-cased ("they're" → "They'Re"). */
    static String title(String s) {
      StringBuilder out = new StringBuilder(s.length());
      boolean previousCased = false;
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        out.append(previousCased ? Character.toLowerCase(c) : Character.toTitleCase(c));
        previousCased = Character.isLetter(c);
      }
      return out.toString();
    }

    static String replace(String s, String old, String with, int count) {
      if (count < 0) {
        return s.replace(old, with);
      }
      List<String> parts = split(s, old, count);
      return String.join(with, parts);
    }
  }

  /**
   * json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False), transformers' tojson: ", " and
   * ": " between items, non-ASCII kept, Python's float repr (jinjava's own tojson is compact Jackson).
   */
  static final class ToJson implements Filter {
    @Override
    public String getName() {
      return "tojson";
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
      return filter(var, interpreter, args, Map.of());
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
      boolean ascii = truthy(arg(args, kwargs, 0, "ensure_ascii"));
      Object indent = arg(args, kwargs, 1, "indent");
      Object separators = arg(args, kwargs, 2, "separators");
      boolean sortKeys = truthy(arg(args, kwargs, 3, "sort_keys"));
      String pad = indent == null ? null : indent instanceof Number n ? " ".repeat(n.intValue()) : indent.toString();
      String itemSep = pad == null ? ", " : ",";
      String keySep = ": ";
      if (separators instanceof List<?> seps) {
        itemSep = Py.str(seps.get(0));
        keySep = Py.str(seps.get(1));
      }
      StringBuilder out = new StringBuilder();
      dump(var, out, new Style(ascii, pad, itemSep, keySep, sortKeys), 0);
      return out.toString();
    }

    private record Style(boolean ascii, String indent, String itemSep, String keySep, boolean sortKeys) {}

    private static void dump(Object v, StringBuilder out, Style style, int level) {
      if (v == null || v == PyNone.NONE) {
        out.append("null");
      } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long || v instanceof Short
          || v instanceof java.math.BigInteger) {
        out.append(v);
      } else if (v instanceof Number n) {
        out.append(pyFloat(n.doubleValue()));
      } else if (v instanceof Map<?, ?> map) {
        Map<?, ?> entries = style.sortKeys() ? new TreeMap<>(map) : map;
        out.append('{');
        int i = 0;
        for (Map.Entry<?, ?> e : entries.entrySet()) {
          separate(out, style, level + 1, i++);
          quote(Py.str(e.getKey()), out, style.ascii());
          out.append(style.keySep());
          dump(e.getValue(), out, style, level + 1);
        }
        close(out, style, level, i, '}');
      } else if (v instanceof Collection<?> || v instanceof Object[] || v instanceof Map.Entry<?, ?>) {
        Collection<?> items = v instanceof Collection<?> c ? c : v instanceof Object[] a ? List.of(a)
            : List.of(((Map.Entry<?, ?>) v).getKey(), ((Map.Entry<?, ?>) v).getValue());
        out.append('[');
        int i = 0;
        for (Object item : items) {
          separate(out, style, level + 1, i++);
          dump(item, out, style, level + 1);
        }
        close(out, style, level, i, ']');
      } else {
        quote(v.toString(), out, style.ascii());
      }
    }

    private static void separate(StringBuilder out, Style style, int level, int index) {
      if (index > 0) {
        out.append(style.itemSep());
      }
      if (style.indent() != null) {
        out.append('\n').append(style.indent().repeat(level));
      }
    }

    private static void close(StringBuilder out, Style style, int level, int count, char bracket) {
      if (count > 0 && style.indent() != null) {
        out.append('\n').append(style.indent().repeat(level));
      }
      out.append(bracket);
    }

    private static void quote(String s, StringBuilder out, boolean ascii) {
      out.append('"');
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        switch (c) {
          case '"' -> out.append("\\\"");
          case '\\' -> out.append("\\\\");
          case '\n' -> out.append("\\n");
          case '\r' -> out.append("\\r");
          case '\t' -> out.append("\\t");
          case '\b' -> out.append("\\b");
          case '\f' -> out.append("\\f");
          default -> {
            if (c < 0x20 || (ascii && c > 0x7e)) {
              out.append(String.format("\\u%04x", (int) c));
            } else {
              out.append(c);
            }
          }
        }
      }
      out.append('"');
    }

    /** Python's repr(float): shortest digits, exponent form below 1e-4 and from 1e16 ("1e-05", "1e+16"). */
    static String pyFloat(double d) {
      if (Double.isNaN(d)) {
        return "NaN";
      }
      if (Double.isInfinite(d)) {
        return d > 0 ? "Infinity" : "-Infinity";
      }
      if (d == 0) {
        return 1 / d < 0 ? "-0.0" : "0.0";
      }
      BigDecimal b = new BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros();
      String digits = b.unscaledValue().toString();
      int exp = digits.length() - 1 - b.scale(); // the decimal exponent of the first digit
      String sign = d < 0 ? "-" : "";
      if (exp < -4 || exp >= 16) {
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        return sign + mantissa + "e" + (exp < 0 ? "-" : "+") + String.format("%02d", Math.abs(exp));
      }
      if (exp < 0) {
        return sign + "0." + "0".repeat(-exp - 1) + digits;
      }
      if (digits.length() <= exp + 1) {
        return sign + digits + "0".repeat(exp + 1 - digits.length()) + ".0";
      }
      return sign + digits.substring(0, exp + 1) + "." + digits.substring(exp + 1);
    }
  }
}
