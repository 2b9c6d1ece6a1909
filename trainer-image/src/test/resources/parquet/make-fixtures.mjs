// Writes the Parquet fixtures of ParquetRowsTest into this folder, with writers independent of the reader under test
// (parquet-java): DuckDB for the files shaped like the hub's (v1 data pages, the standard 3-level lists, SNAPPY by
// default), hyparquet-writer for v2 data pages, parquetjs-lite for the legacy lists (which hyparquet-writer cannot
// write). Every file is read back with hyparquet and compared with the rows it should hold, so a writer that wrote
// something else fails here, not in the test.
//
// To rerun (from the repository root; the packages go to a temporary folder, never into the repository):
//
//   tmp=$(mktemp -d)
//   npm install --prefix "$tmp" --no-audit --no-fund \
//     @duckdb/node-api@1.5.6-r.1 hyparquet-writer@0.17.0 parquetjs-lite@0.8.7 \
//     hyparquet@1.33.0 hyparquet-compressors@1.1.2
//   cp trainer-image/src/test/resources/parquet/make-fixtures.mjs "$tmp"/
//   node "$tmp"/make-fixtures.mjs trainer-image/src/test/resources/parquet
//   rm -rf "$tmp"
//
// (The script is copied next to its node_modules because ES modules resolve packages from the script's own folder.)
// The output is deterministic for these versions; ParquetRowsTest holds the same rows as the ones below.

import { DuckDBInstance } from '@duckdb/node-api'
import { parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { parquetWriteFile } from 'hyparquet-writer'
import parquetjs from 'parquetjs-lite'
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'

const out = process.argv[2]
if (!out || !fs.existsSync(out)) {
  console.error('usage: node make-fixtures.mjs <output folder>')
  process.exit(2)
}

const alpaca = [
  { instruction: 'Translate to French.', input: 'Good morning', output: 'Bonjour' },
  { instruction: 'Name a colour.', input: '', output: 'Blue' },
  { instruction: 'Résume « Ça va ? » en un mot.', input: 'Ünïcödé façade — naïve café', output: 'Bien 🙂' },
  { instruction: '日本語に翻訳してください。', input: 'Thank you', output: 'ありがとうございます' },
  { instruction: 'Write two lines.', input: 'مرحبا', output: "line one\nline two\twith a tab, and 'quotes'" },
]

const messages = [
  [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: '4' },
  ],
  [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello! How can I help?' },
    { role: 'user', content: 'Say « thank you » in Japanese.' },
    { role: 'assistant', content: 'ありがとう 🙏' },
  ],
  [
    { role: 'user', content: 'Ping' },
    { role: 'assistant', content: 'Pong' },
  ],
]

// A SQL literal for DuckDB: strings, numbers, null, lists and structs.
function sql(value) {
  if (value === null) return 'NULL'
  if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value)) return `[${value.map(sql).join(', ')}]`
  return `{${Object.entries(value).map(([k, v]) => `'${k}': ${sql(v)}`).join(', ')}}`
}

function values(rows, columns) {
  return `SELECT * FROM (VALUES ${rows.map(r => `(${columns.map(c => sql(r[c])).join(', ')})`).join(', ')}) t(${columns.join(', ')})`
}

const db = await DuckDBInstance.create(':memory:')
const duck = await db.connect()
await duck.run('SET threads = 1')

async function duckdb(file, select, compression) {
  const target = path.join(out, file)
  await duck.run(`COPY (${select}) TO '${target}' (FORMAT parquet, COMPRESSION ${compression})`)
}

// Hub files: SNAPPY (the datasets-server's parquet conversion) or ZSTD; the other codecs the reader accepts, and one
// it does not (BROTLI) for the error.
const alpacaSelect = values(alpaca, ['instruction', 'input', 'output'])
await duckdb('alpaca.parquet', alpacaSelect, 'snappy')
for (const codec of ['zstd', 'gzip', 'lz4_raw', 'brotli']) {
  await duckdb(`alpaca-${codec.replace('_', '')}.parquet`, alpacaSelect, codec)
}

await duckdb('messages.parquet',
  `SELECT messages::STRUCT(role VARCHAR, content VARCHAR)[] AS messages FROM (${values(messages.map(m => ({ messages: m })), ['messages'])})`,
  'zstd')

// Dictionary-encoded strings, as in most hub files: DuckDB writes a dictionary page only for enough rows.
await duckdb('dictionary.parquet', `SELECT CASE WHEN i % 4 = 0 THEN 'test' ELSE 'train' END AS split,
    [{'role': 'user', 'content': 'question ' || i}, {'role': 'assistant', 'content': 'answer ' || (i % 3)}] AS messages
  FROM range(40) r(i)`, 'snappy')

await duckdb('mixed.parquet', `SELECT * FROM (VALUES
    (1::BIGINT, 7::INTEGER, 0.5::DOUBLE, 0.25::FLOAT, true, 'first', '\\x00\\xFF\\x10'::BLOB, DATE '2024-02-29',
     TIMESTAMP '2024-02-29 12:34:56.789', TIMESTAMPTZ '2024-02-29 12:34:56.789+00', 19.90::DECIMAL(10, 2),
     '0f8fad5b-d9cb-469f-a165-70867728950e'::UUID),
    (9007199254740993::BIGINT, -2::INTEGER, -1.25::DOUBLE, -0.5::FLOAT, false, NULL, NULL, DATE '1970-01-01',
     TIMESTAMP '1970-01-01 00:00:00', NULL, -0.05::DECIMAL(10, 2), NULL),
    (-42::BIGINT, 2147483647::INTEGER, 1e300::DOUBLE, 1.5::FLOAT, true, '', ''::BLOB, NULL, NULL, NULL, NULL, NULL)
  ) t(id, n, score, ratio, ok, note, blob, day, ts, tstz, price, uuid)`, 'uncompressed')

await duckdb('nested.parquet', `SELECT * FROM (VALUES
    (['a', NULL, 'c'], {'x': 1.5, 'y': -2.0}, MAP {'a': 1, 'b': 2}, [[1, 2], [3]]),
    ([]::VARCHAR[], NULL, MAP {}::MAP(VARCHAR, INTEGER), [[], [4]]),
    (NULL, {'x': 0.0, 'y': NULL}, NULL, NULL)
  ) t(tags, point, attrs, matrix)`, 'snappy')

// ShareGPT conversations: v2 data pages, dictionary-encoded, SNAPPY, a row group per row.
const sharegpt = [
  {
    id: 'c1',
    conversations: [{ from: 'human', value: 'Hello' }, { from: 'gpt', value: 'Hi! 👋' }],
    meta: { source: 'sharegpt', turns: 2 },
  },
  {
    id: 'c2',
    conversations: [{ from: 'system', value: 'Be brief.' }, { from: 'human', value: '2+2?' }, { from: 'gpt', value: '4' }],
    meta: { source: null, turns: 3 },
  },
]
parquetWriteFile({
  filename: path.join(out, 'sharegpt.parquet'),
  columnData: ['id', 'conversations', 'meta'].map(name => ({
    name, data: sharegpt.map(r => r[name]), ...(name === 'conversations' && { encoding: 'RLE_DICTIONARY' }),
  })),
  rowGroupSize: 1,
  schema: [
    { name: 'schema', num_children: 3 },
    { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
    { name: 'conversations', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'from', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'value', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'meta', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'source', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    { name: 'turns', type: 'INT32', repetition_type: 'REQUIRED' },
  ],
  codec: 'SNAPPY',
})

// Older writers' lists (parquet-avro's old list structure, protobuf's repeated fields), v1 data pages, uncompressed:
// 2-level LIST groups around a repeated primitive (tags), a repeated group of two fields (pairs) and a repeated group
// named "array" (notes: its one field is the element's, not the element), and repeated fields with no LIST group at
// all, a primitive (scores) and a group (turns).
const legacy = [
  {
    id: 'r1', tags: ['x', 'y'], scores: [3, 1], turns: [{ from: 'human', value: 'hi' }, { from: 'gpt', value: null }],
    pairs: [{ from: 'human', value: 'Q' }], notes: [{ text: 'n1' }, { text: 'n2' }],
  },
  { id: 'r2', tags: [], scores: [], turns: [], pairs: [], notes: [] },
  { id: 'r3', tags: null, scores: [5], turns: [{ from: 'human', value: 'solo' }], pairs: null, notes: [{ text: 'n3' }] },
]
const legacyWriter = await parquetjs.ParquetWriter.openFile(new parquetjs.ParquetSchema({
  id: { type: 'UTF8' },
  tags: { type: 'LIST', optional: true, fields: { array: { type: 'UTF8', repeated: true } } },
  scores: { type: 'INT32', repeated: true },
  turns: { repeated: true, fields: { from: { type: 'UTF8' }, value: { type: 'UTF8', optional: true } } },
  pairs: {
    type: 'LIST', optional: true,
    fields: { array: { repeated: true, fields: { from: { type: 'UTF8' }, value: { type: 'UTF8' } } } },
  },
  notes: { type: 'LIST', fields: { array: { repeated: true, fields: { text: { type: 'UTF8' } } } } },
}), path.join(out, 'legacy.parquet'), { useDataPageV2: false })
for (const { id, tags, scores, turns, pairs, notes } of legacy) {
  await legacyWriter.appendRow({
    id,
    scores,
    turns: turns.map(({ from, value }) => (value === null ? { from } : { from, value })),
    notes: { array: notes },
    ...(tags && { tags: { array: tags } }),
    ...(pairs && { pairs: { array: pairs } }),
  })
}
await legacyWriter.close()

// The cross-check: what hyparquet reads back, in JSON terms (bigints as numbers where exact, dates as ISO text,
// bytes as base64).
function plain(value) {
  if (value === null || value === undefined) return null
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : String(value)
  if (value instanceof Date) return value.toISOString()
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64')
  if (Array.isArray(value)) return value.map(plain)
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  return value
}

async function readBack(file) {
  const bytes = fs.readFileSync(path.join(out, file))
  const rows = await parquetReadObjects({
    file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    compressors,
    utf8: false, // unannotated BYTE_ARRAY stays bytes (the blob column)
  })
  return { rows: rows.map(plain), size: bytes.length }
}

const expected = {
  'alpaca.parquet': alpaca,
  'alpaca-zstd.parquet': alpaca,
  'alpaca-gzip.parquet': alpaca,
  'alpaca-lz4raw.parquet': alpaca,
  'alpaca-brotli.parquet': alpaca,
  'messages.parquet': messages.map(m => ({ messages: m })),
  'dictionary.parquet': Array.from({ length: 40 }, (_, i) => ({
    split: i % 4 === 0 ? 'test' : 'train',
    messages: [{ role: 'user', content: `question ${i}` }, { role: 'assistant', content: `answer ${i % 3}` }],
  })),
  'mixed.parquet': [
    { id: 1, n: 7, score: 0.5, ratio: 0.25, ok: true, note: 'first', blob: 'AP8Q', day: '2024-02-29T00:00:00.000Z',
      ts: '2024-02-29T12:34:56.789Z', tstz: '2024-02-29T12:34:56.789Z', price: 19.9,
      uuid: '0f8fad5b-d9cb-469f-a165-70867728950e' },
    { id: '9007199254740993', n: -2, score: -1.25, ratio: -0.5, ok: false, note: null, blob: null,
      day: '1970-01-01T00:00:00.000Z', ts: '1970-01-01T00:00:00.000Z', tstz: null, price: -0.05, uuid: null },
    { id: -42, n: 2147483647, score: 1e300, ratio: 1.5, ok: true, note: '', blob: '', day: null, ts: null, tstz: null,
      price: null, uuid: null },
  ],
  'nested.parquet': [
    { tags: ['a', null, 'c'], point: { x: 1.5, y: -2 }, attrs: { a: 1, b: 2 }, matrix: [[1, 2], [3]] },
    { tags: [], point: null, attrs: {}, matrix: [[], [4]] },
    { tags: null, point: { x: 0, y: null }, attrs: null, matrix: null },
  ],
  'sharegpt.parquet': sharegpt,
  // hyparquet reads the legacy lists of groups its own way: pairs as a struct around the list, notes as the list of
  // the one field (parquet-java and the format's compatibility rules: lists of {from, value} and of {text}).
  'legacy.parquet': legacy.map(({ pairs, notes, ...rest }) => ({
    ...rest, pairs: pairs && { array: pairs }, notes: notes.map(n => n.text),
  })),
}

let failed = false
for (const [file, rows] of Object.entries(expected)) {
  const back = await readBack(file)
  const ok = isDeepStrictEqual(back.rows, rows) && back.size < 20_000
  failed ||= !ok
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${file} (${back.size} bytes)`)
  if (!ok) console.log(JSON.stringify(back.rows, null, 1))
}
process.exit(failed ? 1 : 0)
