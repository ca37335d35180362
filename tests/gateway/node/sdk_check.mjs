// Drives a gpucloud gateway with the official openai Node SDK and prints what it saw as JSON.
// Env: GPUCLOUD_BASE_URL (…/v1), GPUCLOUD_API_KEY, GPUCLOUD_MODEL.
import OpenAI from "openai";

const baseURL = process.env.GPUCLOUD_BASE_URL;
const apiKey = process.env.GPUCLOUD_API_KEY;
const model = process.env.GPUCLOUD_MODEL;
const messages = [{ role: "user", content: "Say hello from Node." }];
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

async function failure(call) {
  try {
    await call();
    return null;
  } catch (error) {
    return {
      class: error.constructor.name,
      status: error.status ?? null,
      type: error.type ?? null,
      requestId: error.request_id ?? error.requestID ?? null,
    };
  }
}

const models = await client.models.list();
const completion = await client.chat.completions.create({ model, messages, max_tokens: 16 });
const stream = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.choices.length > 0) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
const badKey = new OpenAI({ baseURL, apiKey: "gpc-not-a-key", maxRetries: 0 });

console.log(
  JSON.stringify({
    models: models.data.map((m) => m.id),
    completion: {
      id: completion.id,
      content: completion.choices[0].message.content,
      finishReason: completion.choices[0].finish_reason,
      usage: completion.usage,
    },
    stream: { text, usage, chunks },
    unauthenticated: await failure(() =>
      badKey.chat.completions.create({ model, messages }),
    ),
    notFound: await failure(() =>
      client.chat.completions.create({ model: "no-such-model", messages }),
    ),
  }),
);
