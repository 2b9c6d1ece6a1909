package dev.finetune.trainer.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.LocalDate;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Each Python-Jinja behaviour that chat templates rely on, on small templates. Every expected string is what
 * transformers' environment (jinja2 3.1, ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop
 * controls, its raise_exception, tojson and generation tag) renders for the same template and variables.
 */
class ChatTemplateTest {

  private static final List<Map<String, Object>> CHAT = List.of(
      message("system", " Be brief. \n"),
      message("user", "Hi"),
      message("assistant", "Hello!"),
      message("user", "Bye"));

  private static Map<String, Object> message(String role, Object content) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("role", role);
    m.put("content", content);
    return m;
  }

  private static String render(String template, List<Map<String, Object>> messages) {
    return render(template, messages, Map.of());
  }

  private static String render(String template, List<Map<String, Object>> messages, Map<String, Object> extra) {
    return ChatTemplate.of(template, Map.of("bos_token", "<s>", "eos_token", "</s>"))
        .render(messages, false, extra).text();
  }

  @Test
  void trimBlocksAndLstripBlocks() {
    String template = """
        {% for m in messages %}
            {% if m.role == 'user' %}
        U: {{ m.content }}
            {% else %}
        {{ m.role }}: {% if true %}{{ m.content|trim }}{% endif %}
            {% endif %}
          {# a comment on its own line #}
        {% endfor %}
        """;
    // The block lines vanish whole; the space in "role: {% if" is not at a line start and stays; trim_blocks eats
    // the newline after "{% endif %}" on the "role:" line.
    assertThat(render(template, CHAT)).isEqualTo("system: Be brief.U: Hi\nassistant: Hello!U: Bye\n");
  }

  @Test
  void templateSourceNewlinesAsJinjaReadsThem() {
    // \r\n becomes \n, and one trailing newline of the source is dropped (keep_trailing_newline=False).
    assertThat(render("a\r\nb{{ bos_token }}\n", CHAT)).isEqualTo("a\nb<s>");
    assertThat(render("a\n\n", CHAT)).isEqualTo("a\n");
  }

  @Test
  void whitespaceControl() {
    String template = "{%- for m in messages -%}\n  [{{- m.role -}}]  {#- c -#}\n{%- endfor %}\n|{{ 'x' }} {#- c #} y";
    assertThat(render(template, CHAT)).isEqualTo("[system][user][assistant][user]|x y");
  }

  @Test
  void loopControlsAndLoopVariables() {
    String template = "{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}"
        + "{% if m.role == 'assistant' %}{% break %}{% endif %}"
        + "{{ loop.index0 }}{{ loop.index }}{{ loop.last }}{{ loop.length }}{% endfor %}";
    assertThat(render(template, CHAT)).isEqualTo("12False4");
    assertThat(render("{% for m in messages if m.role != 'system' %}{{ m.role[0] }}{{ loop.index }}"
        + "{{ '.' if loop.last }}{% endfor %}", CHAT)).isEqualTo("u1a2u3.");
  }

  @Test
  void indexingAndSlicing() {
    String template = "{{ messages[0]['role'] }}|{{ messages[1:]|length }}|{{ messages[-1].content }}"
        + "|{{ (messages[::-1]|first).role }}|{% set n = 1 %}{{ messages[:n+1]|map(attribute='role')|join(',') }}"
        + "|{{ 'hello'[1:3] }}{{ 'hello'[::-1] }}{{ 'hello'[-1] }}";
    assertThat(render(template, CHAT)).isEqualTo("system|3|Bye|user|system,user|elolleho");
  }

  @Test
  void testsOnValues() {
    List<Map<String, Object>> messages = new ArrayList<>(CHAT);
    messages.add(message("assistant", null)); // e.g. a tool-call turn: content is None, which is defined
    messages.add(message("user", List.of(Map.of("type", "text", "text", "parts"))));
    String template = "{% for m in messages[3:] %}{{ m.content is string }},{{ m.content is defined }},"
        + "{{ m.content is none }},{{ m.tool_calls is defined }},{{ m.content is iterable }};{% endfor %}"
        + "|{{ tools is defined }}{{ tools is none }}{{ tools }}|{% if not tools %}no tools{% endif %}";
    assertThat(render(template, messages)).isEqualTo(
        "True,True,False,False,True;False,True,True,False,False;False,True,False,False,True;"
            + "|TrueTrueNone|no tools");
  }

  @Test
  void notBindsLooserThanTestsAndComparisons() {
    String template = "{% if not custom is defined %}A{% endif %}{% if not messages[0].role == 'user' %}B{% endif %}"
        + "{{ 'user' in messages|map(attribute='role') }}{{ 'x' not in 'abc' }}"
        + "{{ namespace(n=messages|length - 1).n }}{{ 1+1 }}{{ 2 if false else 3 if true else 4 }}";
    assertThat(render(template, CHAT)).isEqualTo("ABTrueTrue323");
  }

  @Test
  void pythonTruthAndEquality() {
    // jinjava alone takes the string "false" as false and compares '1' == 1 as true.
    String template = "{% for m in messages %}{% if m.content %}T{% else %}F{% endif %}{% endfor %}"
        + "{{ '1' == 1 }}{{ 1 == 1.0 }}{{ none == none }}";
    assertThat(render(template, List.of(message("user", "false"), message("assistant", ""))))
        .isEqualTo("TFFalseTrueTrue");
  }

  @Test
  void stringMethodsAndFilters() {
    String template = "{{ messages[0].content.strip() }}|{{ ' a  b '.split() }}|{{ 'a,b,,c'.split(',') }}"
        + "|{{ 'a b c'.split(' ', 1) }}|{{ 'xhix'.lstrip('x') }}{{ 'xhix'.rstrip('x') }}"
        + "|{{ 'abc'.startswith('a') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}"
        + "|{{ \"they're here\".title() }}|{{ 'ab😀'|length }}|{{ '  t \n'|trim }}|{{ 'a-b'.replace('-', '+') }}"
        + "|{{ 'x\ny'|indent(2, first=true) }}";
    assertThat(render(template, CHAT)).isEqualTo(
        "Be brief.|['a', 'b']|['a', 'b', '', 'c']|['a', 'b c']|hixxhi|TrueTrue|HIhi|They'Re Here|3|t|a+b|  x\n  y");
  }

  @Test
  void namespaceAndConcatenation() {
    String template = "{% set ns = namespace(sys='', n=0) %}{% for m in messages %}"
        + "{% if m.role == 'system' %}{% set ns.sys = m.content|trim %}{% else %}{% set ns.n = ns.n + 1 %}{% endif %}"
        + "{% endfor %}{{ bos_token + ns.sys ~ '/' ~ ns.n + eos_token }}";
    assertThat(render(template, CHAT)).isEqualTo("<s>Be brief./3</s>");
  }

  @Test
  void printsValuesAsPythonDoes() {
    assertThat(render("{{ true }} {{ none }} {{ 1.5 }} {{ 1e20 }} {{ [1, 'a', none, false] }} {{ {'k': \"it's\"} }}"
        + " {{ false|string }}", CHAT)).isEqualTo("True None 1.5 1e+20 [1, 'a', None, False] {'k': \"it's\"} False");
  }

  @Test
  void contentIsNotRenderedAgain() {
    // jinjava's nested interpretation would have run this content as a template.
    assertThat(render("{{ messages[0].content }}", List.of(message("user", "{{ 7*7 }} {% if %}"))))
        .isEqualTo("{{ 7*7 }} {% if %}");
  }

  @Test
  void raiseExceptionCarriesTheTemplatesMessage() {
    String template = "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
        + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        + "{% endif %}{{ m.content }}{% endfor %}";
    assertThatThrownBy(() -> render(template, CHAT))
        .isInstanceOf(ChatTemplate.TemplateException.class)
        .hasMessage("Conversation roles must alternate user/assistant/user/assistant/...");
    assertThat(render(template, CHAT.subList(1, 4))).isEqualTo("HiHello!Bye");
  }

  @Test
  void jinjaErrorsBecomeTemplateExceptions() {
    assertThatThrownBy(() -> render("{% if x %}never closed", CHAT))
        .isInstanceOf(ChatTemplate.TemplateException.class).hasMessageContaining("endif");
    assertThatThrownBy(() -> render("{{ x + }}", CHAT)).isInstanceOf(ChatTemplate.TemplateException.class);
    assertThatThrownBy(() -> render("{% frobnicate %}", CHAT))
        .isInstanceOf(ChatTemplate.TemplateException.class).hasMessageContaining("frobnicate");
  }

  @Test
  void immutableSandboxRefusesMutation() {
    // transformers renders in an ImmutableSandboxedEnvironment; jinjava's lists would append.
    assertThatThrownBy(() -> render("{% set l = [] %}{{ l.append(1) }}", CHAT))
        .isInstanceOf(ChatTemplate.TemplateException.class)
        .hasMessage("access to attribute 'append' of 'list' object is unsafe.");
    assertThatThrownBy(() -> render("{% do messages.pop() %}", CHAT)).isInstanceOf(ChatTemplate.TemplateException.class);
  }

  @Test
  void tojsonIsPythonsJsonDumps() {
    Map<String, Object> parameters = new LinkedHashMap<>();
    parameters.put("city", "Zürich");
    parameters.put("units", List.of("°C", "°F"));
    List<Object> limits = new ArrayList<>(List.of(0.5, 1e-5, 1e16, 3));
    limits.add(null);
    limits.add(true);
    parameters.put("limits", limits);
    Map<String, Object> tool = new LinkedHashMap<>();
    tool.put("name", "get_weather");
    tool.put("parameters", parameters);
    tool.put("note", "say \"hi\"\n\t\\ 日本 😀");
    Map<String, Object> extra = Map.of("tool", tool);

    assertThat(render("{{ tool|tojson }}", CHAT, extra)).isEqualTo(
        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Zürich\", \"units\": [\"°C\", \"°F\"], "
            + "\"limits\": [0.5, 1e-05, 1e+16, 3, null, true]}, \"note\": \"say \\\"hi\\\"\\n\\t\\\\ 日本 😀\"}");
    assertThat(render("{{ tool.parameters|tojson(indent=2) }}", CHAT, extra)).isEqualTo(
        "{\n  \"city\": \"Zürich\",\n  \"units\": [\n    \"°C\",\n    \"°F\"\n  ],\n  \"limits\": [\n    0.5,\n"
            + "    1e-05,\n    1e+16,\n    3,\n    null,\n    true\n  ]\n}");
    assertThat(render("{{ {'b': 1, 'a': [1, 2]}|tojson(sort_keys=true, separators=(',', ':')) }}", CHAT))
        .isEqualTo("{\"a\":[1,2],\"b\":1}");
    assertThat(render("{{ 'é😀'|tojson(ensure_ascii=true) }}", CHAT)).isEqualTo("\"\\u00e9\\ud83d\\ude00\"");
  }

  @Test
  void strftimeNowIsTodayInTheGivenFormat() {
    String today = render("{{ strftime_now('%d %b %Y') }}", CHAT);
    assertThat(today).matches("\\d{2} [A-Z][a-z]{2} \\d{4}");
    String expected = LocalDate.now().format(DateTimeFormatter.ofPattern("dd MMM yyyy", Locale.ENGLISH));
    String after = LocalDate.now().format(DateTimeFormatter.ofPattern("dd MMM yyyy", Locale.ENGLISH));
    assertThat(today).isIn(expected, after); // a render across midnight
  }

  @Test
  void specialTokensAndExtraKwargsAreVariables() {
    ChatTemplate t = ChatTemplate.of("{{ bos_token }}{{ unk_token }}{{ add_generation_prompt }}{{ date_string }}"
        + "{% if add_generation_prompt %}{{ pad_token }}{% endif %}",
        Map.of("bos_token", "<s>", "unk_token", "<unk>", "pad_token", "<pad>"));
    assertThat(t.render(CHAT, true, Map.of("date_string", "26 Jul 2024")).text())
        .isEqualTo("<s><unk>True26 Jul 2024<pad>");
    Map<String, Object> override = new HashMap<>();
    override.put("bos_token", "[BOS]");
    assertThat(t.render(CHAT, false, override).text()).isEqualTo("[BOS]<unk>False");
  }

  @Test
  void generationSpansMarkTheAssistantText() {
    String template = "{% for m in messages %}{% if m.role == 'assistant' %}<a>{% generation %}{{ m.content }}"
        + "{{ eos_token }}{% endgeneration %}\n{% else %}<{{ m.role }}>{{ m.content|trim }}\n{% endif %}{% endfor %}";
    List<Map<String, Object>> messages = List.of(message("user", "Hi 😀"), message("assistant", "Hello!"),
        message("user", "Bye"), message("assistant", "See you"));
    ChatTemplate.Rendered r = ChatTemplate.of(template, Map.of("eos_token", "</s>")).render(messages, false, Map.of());
    assertThat(r.text()).isEqualTo("<user>Hi 😀\n<a>Hello!</s><user>Bye\n<a>See you</s>");
    assertThat(r.generationSpans()).hasSize(2);
    // Offsets index the Java String: UTF-16 units, so the emoji counts 2 (transformers: [[14, 24], [37, 48]]).
    assertThat(r.generationSpans().stream().map(s -> r.text().substring(s[0], s[1])))
        .containsExactly("Hello!</s>", "See you</s>");
    assertThat(r.generationSpans().get(0)).containsExactly(15, 25);
    assertThat(r.generationSpans().get(1)).containsExactly(38, 49);
  }
}
