// make-goldens.mjs -- regenerates <template>/cases.jsonl for the chat-template parity fixtures.
//
// Goldens come from an implementation independent of the trainer: transformers.js
// (`PreTrainedTokenizer.apply_chat_template`, which renders with @huggingface/jinja) for
// templates that have a tokenizer.json in their folder, and @huggingface/jinja's `Template`
// directly (fed the same variables transformers.js passes) for the others.
//
// Inputs (verbatim copies, see SOURCES.md; this script only reads them):
//   <dir>/chat_template.jinja, <dir>/special_tokens.json, and optionally <dir>/tokenizer.json
// Output (the only files this script writes):
//   <dir>/cases.jsonl   for dir in llama3.1, qwen2.5, smollm2, mistral
//
// How to rerun (dependencies go to a temp dir, never into the repo; no node_modules or
// lockfile is kept here). Node 20+:
//
//   mkdir -p /tmp/chat-goldens-deps && cd /tmp/chat-goldens-deps && npm init -y >/dev/null
//   npm install --ignore-scripts --no-audit --no-fund \
//       @huggingface/transformers@4.3.2 @huggingface/jinja@0.5.13
//   cd -   # back to the repo root
//   GOLDENS_DEPS=/tmp/chat-goldens-deps node trainer-image/src/test/resources/chat/make-goldens.mjs
//
// Exact versions used (asserted at start-up, the script refuses to run with others):
//   @huggingface/transformers 4.3.2, @huggingface/jinja 0.5.13,
//   @huggingface/tokenizers 0.2.0 (installed as a dependency of transformers 4.3.2).
// `--ignore-scripts` skips onnxruntime-node's post-install download; only the tokenizer and
// template code is used here.
//
// Dates: none of the four templates calls strftime_now(). Llama 3.1's template falls back to
// date_string = "26 Jul 2024" when date_string is not defined; like transformers (Python and
// JS) we never pass date_string, so the output is date-independent (asserted below).
//
// The output is deterministic: running the script twice gives byte-identical files.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const DEPS = process.env.GOLDENS_DEPS || '/tmp/chat-goldens-deps';
const NM = join(DEPS, 'node_modules');

const EXPECTED_VERSIONS = {
    '@huggingface/transformers': '4.3.2',
    '@huggingface/jinja': '0.5.13',
    '@huggingface/tokenizers': '0.2.0',
};
for (const [pkg, want] of Object.entries(EXPECTED_VERSIONS)) {
    const pj = join(NM, pkg, 'package.json');
    if (!existsSync(pj)) {
        throw new Error(`${pkg} not found under ${NM}; see the header comment for how to install it`);
    }
    const got = JSON.parse(readFileSync(pj, 'utf8')).version;
    if (got !== want) throw new Error(`${pkg}: expected version ${want}, found ${got} in ${NM}`);
}
// transformers must use this very jinja (no nested copy with another version)
if (existsSync(join(NM, '@huggingface/transformers/node_modules/@huggingface/jinja'))) {
    throw new Error('transformers has a nested @huggingface/jinja; install exactly the versions above');
}

const { PreTrainedTokenizer } = await import(
    pathToFileURL(join(NM, '@huggingface/transformers/dist/transformers.node.mjs')).href
);
const { Template } = await import(pathToFileURL(join(NM, '@huggingface/jinja/dist/index.js')).href);

// ---------------------------------------------------------------------------------------------
// Templates: folder name -> end-of-turn token(s) the template writes right after an assistant
// message's content (used for assistant_spans, see SOURCES.md for the rule).
const TEMPLATES = [
    { dir: 'llama3.1', eot: '<|eot_id|>' },
    { dir: 'qwen2.5', eot: '<|im_end|>' },
    { dir: 'smollm2', eot: '<|im_end|>' },
    { dir: 'mistral', eot: '</s>' },
];

// transformers.js passes these special-token attributes to the template (when set), see
// SPECIAL_TOKEN_ATTRIBUTES in transformers/src/tokenization_utils.js.
const SPECIAL_TOKEN_ATTRIBUTES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

// ---------------------------------------------------------------------------------------------
// Conversations: the same for every template.
const SYS = 'You are a helpful assistant.';
const U1 = 'What is the capital of France?';
const A1 = 'The capital of France is Paris.';
const U2 = 'And of Germany?';
const A2 = 'Berlin is the capital of Germany.';
const U3 = 'Which of the two cities is larger?';
const A3 = 'Berlin has more inhabitants than Paris (city proper).';

const m = (role, content) => ({ role, content });

const CASES = [
    { name: 'single_turn', add_generation_prompt: false, messages: [m('user', U1), m('assistant', A1)] },
    {
        name: 'single_turn_with_system',
        add_generation_prompt: false,
        messages: [m('system', SYS), m('user', U1), m('assistant', A1)],
    },
    {
        name: 'multi_turn_3_pairs',
        add_generation_prompt: false,
        messages: [m('user', U1), m('assistant', A1), m('user', U2), m('assistant', A2), m('user', U3), m('assistant', A3)],
    },
    {
        name: 'multi_turn_3_pairs_with_system',
        add_generation_prompt: false,
        messages: [
            m('system', SYS),
            m('user', U1), m('assistant', A1),
            m('user', U2), m('assistant', A2),
            m('user', U3), m('assistant', A3),
        ],
    },
    {
        name: 'unicode',
        add_generation_prompt: false,
        messages: [
            m('system', 'Réponds en français, s’il te plaît. Ünïcödé: naïve café, Ærøskøbing, ß.'),
            m('user', 'Translate: 日本語のテキスト, 中文文本, 한국어 텍스트. Emoji: 🎉👍🏽👩‍💻. Arabic: مرحبا بالعالم. Hebrew: שלום עולם.'),
            m('assistant', 'Voilà : texte japonais 日本語, chinois 中文, coréen 한국어 🎉 — arabe «مرحبا», hébreu «שלום» ✓.'),
        ],
    },
    {
        name: 'empty_assistant',
        add_generation_prompt: false,
        messages: [m('user', 'Reply with nothing at all.'), m('assistant', '')],
    },
    {
        name: 'whitespace_edges',
        add_generation_prompt: false,
        messages: [
            m('system', '  You are terse.  \n'),
            m('user', '\n  Hello there, with spaces around.  \n\n'),
            m('assistant', '  \nHi! Trailing tab and newline follow.\t \n'),
        ],
    },
    {
        name: 'generation_prompt_single_turn',
        add_generation_prompt: true,
        messages: [m('user', U1)],
    },
    {
        name: 'generation_prompt_multi_turn_with_system',
        add_generation_prompt: true,
        messages: [m('system', SYS), m('user', U1), m('assistant', A1), m('user', U2), m('assistant', A2), m('user', U3)],
    },
    {
        name: 'ends_with_user_no_generation_prompt',
        add_generation_prompt: false,
        messages: [m('user', U1), m('assistant', A1), m('user', U2)],
    },
    {
        name: 'quotes_backslashes_braces',
        add_generation_prompt: false,
        messages: [
            m('user', 'Quote "double" and \'single\', backslash \\ and a literal \\n, braces {{ user }} and {% if x %}y{% endif %} and {# not a comment #}.'),
            m('assistant', 'Sure: {"json": [1, 2], "path": "C:\\\\temp"} then {{ }} and {% %} and `code` and \\t.'),
        ],
    },
    {
        name: 'consecutive_user_messages',
        add_generation_prompt: false,
        messages: [m('user', 'First part of the question.'), m('user', 'Second part of the question.'), m('assistant', 'One answer to both parts.')],
    },
];

// ---------------------------------------------------------------------------------------------
function loadTemplate({ dir, eot }) {
    const base = join(HERE, dir);
    const chat_template = readFileSync(join(base, 'chat_template.jinja'), 'utf8');
    const special = JSON.parse(readFileSync(join(base, 'special_tokens.json'), 'utf8'));
    if (chat_template.includes('strftime_now')) {
        throw new Error(`${dir}: template uses strftime_now(); pin the date before generating goldens`);
    }
    const tokPath = join(base, 'tokenizer.json');
    let tokenizer = null;
    if (existsSync(tokPath)) {
        const tokenizerJSON = JSON.parse(readFileSync(tokPath, 'utf8'));
        // tokenizer_config as transformers.js would read it: the special tokens + the template.
        tokenizer = new PreTrainedTokenizer(tokenizerJSON, { ...special, chat_template });
    }
    const compiled = new Template(chat_template);
    const specialVars = Object.create(null);
    for (const key of SPECIAL_TOKEN_ATTRIBUTES) if (special[key]) specialVars[key] = special[key];

    // Direct @huggingface/jinja rendering with the variables transformers.js passes.
    const renderJinja = (messages, add_generation_prompt) =>
        compiled.render({ messages, add_generation_prompt, tools: null, documents: null, ...specialVars });

    // transformers.js rendering when a tokenizer is available (cross-checked against renderJinja).
    const render = (messages, add_generation_prompt) => {
        const viaJinja = renderJinja(messages, add_generation_prompt);
        if (tokenizer) {
            const viaTok = tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt });
            if (viaTok !== viaJinja) throw new Error(`${dir}: transformers.js and jinja renders differ`);
        }
        return viaJinja;
    };
    const encode = tokenizer
        ? (messages, add_generation_prompt) =>
              Array.from(
                  tokenizer.apply_chat_template(messages, {
                      tokenize: true,
                      add_generation_prompt,
                      return_tensor: false,
                      return_dict: false,
                  }),
                  Number,
              )
        : null;
    return { dir, eot, render, encode, tokenizer };
}

// assistant_spans: see SOURCES.md ("assistant_spans rule").
function assistantSpans(t, messages, text) {
    const spans = [];
    for (let i = 0; i < messages.length; i++) {
        if (messages[i].role !== 'assistant') continue;
        const prefix = t.render(messages.slice(0, i), true);
        const full = t.render(messages.slice(0, i + 1), false);
        if (!full.startsWith(prefix)) {
            throw new Error(`${t.dir}: render(messages[:${i + 1}]) does not start with render(messages[:${i}], gen prompt)`);
        }
        const start = prefix.length;
        const turn = full.slice(start);
        const k = turn.lastIndexOf(t.eot);
        if (k < 0) throw new Error(`${t.dir}: no ${t.eot} after assistant message ${i}`);
        if (!/^\s*$/.test(turn.slice(k + t.eot.length))) {
            throw new Error(`${t.dir}: non-whitespace text after ${t.eot} of assistant message ${i}`);
        }
        const end = start + k + t.eot.length;
        if (!text.startsWith(full.slice(0, end))) {
            throw new Error(`${t.dir}: case text does not extend the render of messages[:${i + 1}]`);
        }
        spans.push([start, end]);
    }
    return spans;
}

function buildCase(t, c) {
    const head = { name: c.name, messages: c.messages, add_generation_prompt: c.add_generation_prompt };
    let text;
    try {
        text = t.render(c.messages, c.add_generation_prompt);
    } catch (e) {
        return { ...head, error: String(e && e.message ? e.message : e) };
    }
    if (t.dir === 'llama3.1' && !text.includes('Today Date: 26 Jul 2024\n')) {
        throw new Error('llama3.1: expected the template default date_string');
    }
    const out = { ...head, text };
    if (t.encode) {
        const ids = t.encode(c.messages, c.add_generation_prompt);
        const decoded = t.tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
        if (decoded !== text) throw new Error(`${t.dir}/${c.name}: decode(input_ids) !== text`);
        out.input_ids = ids;
    }
    out.assistant_spans = assistantSpans(t, c.messages, text);
    return out;
}

for (const spec of TEMPLATES) {
    const t = loadTemplate(spec);
    const lines = CASES.map((c) => JSON.stringify(buildCase(t, c)));
    const file = join(HERE, spec.dir, 'cases.jsonl');
    writeFileSync(file, lines.join('\n') + '\n', 'utf8');
    const errors = lines.filter((l) => JSON.parse(l).error !== undefined).length;
    console.log(`${spec.dir}: ${lines.length} cases (${errors} error cases)${t.encode ? ', with input_ids' : ''} -> ${file}`);
}
