// The peer of ChatBench: transformers.js 4.3.2 (@huggingface/jinja renders, @huggingface/tokenizers tokenizes) on the
// same N conversations, the same template, special tokens and tokenizer.json.
// Usage: node bench/chat-bench.mjs N CHATS.jsonl TEMPLATE_DIR DEPS_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [n, chats, dir, deps] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const { PreTrainedTokenizer } = await import(
  pathToFileURL(join(deps, 'node_modules/@huggingface/transformers/dist/transformers.node.mjs')).href);
const chat_template = readFileSync(join(dir, 'chat_template.jinja'), 'utf8');
const special = JSON.parse(readFileSync(join(dir, 'special_tokens.json'), 'utf8'));
const tokenizer = new PreTrainedTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
  { ...special, chat_template });
const distinct = readFileSync(chats, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).messages);
const conversations = Array.from({ length: n }, (_, i) => distinct[i % distinct.length]);
for (let i = 0; i < Math.min(n, 2000); i++) {
  tokenizer.apply_chat_template(conversations[i], { tokenize: true, return_tensor: false });
}
const t0 = performance.now();
const texts = conversations.map((c) => tokenizer.apply_chat_template(c, { tokenize: false }));
const t1 = performance.now();
let tokens = 0;
for (const text of texts) tokens += tokenizer.encode(text, { add_special_tokens: false }).length;
const t2 = performance.now();
console.log(`transformers.js render ${n} conversations: ${((t1 - t0) / 1000).toFixed(2)} s`);
console.log(`transformers.js tokenize ${n} conversations (${tokens} tokens): ${((t2 - t1) / 1000).toFixed(2)} s`);
console.log(`transformers.js render and tokenize: ${((t2 - t0) / 1000).toFixed(2)} s`);
