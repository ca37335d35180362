// A streamed chat completion over fetch(): SSE chunks, queue-position comments, usage, abort.
import { ApiError, errorFrom } from "./api.js";

const QUEUE_POSITION = /queue position\s+(\d+)/i;

/** Splits a text stream into SSE lines, calling `onLine` for each (without its newline). */
async function readLines(body, onLine) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer[end] === "\r" ? 2 : 1));
      if (onLine(line) === false) {
        await reader.cancel();
        return;
      }
    }
  }
  if (buffer) onLine(buffer);
}

/**
 * POSTs `request` (stream forced on) to /v1/chat/completions with `apiKey` and reports progress:
 * onQueued(position), onDelta(text), onUsage(usage), onFinish(reason). Resolves when the stream
 * ends with [DONE]; rejects with ApiError (HTTP or mid-stream error) or AbortError (`signal`).
 */
export async function streamChat({ apiKey, request, signal, onQueued, onDelta, onUsage, onFinish }) {
  let response;
  try {
    response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway cannot be reached.");
  }
  if (!response.ok) throw await errorFrom(response);

  let finished = false;
  let failure = null;
  await readLines(response.body, (line) => {
    if (line.startsWith(":")) {
      const match = QUEUE_POSITION.exec(line);
      if (match) onQueued?.(Number(match[1]));
      return true;
    }
    if (!line.startsWith("data:")) return true;
    const data = line.slice(5).trim();
    if (data === "[DONE]") {
      finished = true;
      return false;
    }
    const chunk = JSON.parse(data);
    if (chunk.error) {
      failure = new ApiError(500, chunk.error.message || "The stream failed.", chunk.error);
      return false;
    }
    if (chunk.usage) onUsage?.(chunk.usage);
    for (const choice of chunk.choices || []) {
      if (choice.delta?.content) onDelta?.(choice.delta.content);
      if (choice.finish_reason) onFinish?.(choice.finish_reason);
    }
    return true;
  });
  if (failure) throw failure;
  if (!finished) throw new ApiError(502, "The stream ended before it was complete.");
}

/** GET /v1/models with an API key: the ids of the chat models it may use (embedding
 * models cannot chat). */
export async function listModels(apiKey, signal) {
  let response;
  try {
    response = await fetch("/v1/models", { headers: { Authorization: `Bearer ${apiKey}` }, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway cannot be reached.");
  }
  if (!response.ok) throw await errorFrom(response);
  const body = await response.json();
  return body.data.filter((m) => m.capabilities?.kind !== "embedding").map((m) => m.id);
}
