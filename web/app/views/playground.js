// Playground: chat with a model through the OpenAI-compatible API, streamed, with timings.
import { useEffect, useRef, useState } from "preact/hooks";
import { decimal, duration, integer } from "../format.js";
import { useTick } from "../hooks.js";
import { html } from "../html.js";
import { sessionKeys } from "../session.js";
import { listModels, streamChat } from "../stream.js";
import { Card, Empty, PageHeader } from "../ui.js";

const PASTE = "paste";

/** The key picker's choice as a secret: a key created in this tab, or one pasted. */
function useKeyChoice(initialId) {
  const keys = sessionKeys();
  const [choice, setChoice] = useState(() =>
    keys.some((k) => k.id === initialId) ? initialId : keys[0]?.id || PASTE,
  );
  const [pasted, setPasted] = useState("");
  const secret = choice === PASTE ? pasted.trim() : keys.find((k) => k.id === choice)?.secret || "";
  return { keys, choice, setChoice, pasted, setPasted, secret };
}

/** Models the chosen key may use, from GET /v1/models; {models, error}. */
function useModels(secret) {
  const [state, setState] = useState({ models: [], error: null, loading: false });
  useEffect(() => {
    if (!secret) {
      setState({ models: [], error: null, loading: false });
      return undefined;
    }
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(async () => {
      try {
        const models = await listModels(secret, controller.signal);
        setState({ models, error: null, loading: false });
      } catch (error) {
        if (error.name !== "AbortError") setState({ models: [], error, loading: false });
      }
    }, 250); // a pasted key arrives one keystroke at a time
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [secret]);
  return state;
}

function Settings({ pick, models, settings, setSettings }) {
  const set = (field) => (e) => setSettings({ ...settings, [field]: e.currentTarget.value });
  return html`
    <div class="form">
      <label>
        API key
        <select value=${pick.choice} onChange=${(e) => pick.setChoice(e.currentTarget.value)} data-testid="pg-key">
          ${pick.keys.map((k) => html`<option value=${k.id} key=${k.id}>${k.name} (…${k.last4})</option>`)}
          <option value=${PASTE}>Paste a key…</option>
        </select>
      </label>
      ${pick.choice === PASTE &&
      html`<label>
        Key secret
        <input type="password" value=${pick.pasted} onInput=${(e) => pick.setPasted(e.currentTarget.value)}
          placeholder="paste an API key" autocomplete="off" data-testid="pg-key-input" />
      </label>`}
      ${pick.keys.length === 0 &&
      html`<p class="muted small">Keys you <a href="#/keys">create</a> in this tab are listed here.</p>`}
      <label>
        Model
        ${models.models.length > 0
          ? html`<select value=${settings.model} onChange=${set("model")} data-testid="pg-model">
              ${models.models.map((m) => html`<option value=${m} key=${m}>${m}</option>`)}
            </select>`
          : html`<input value=${settings.model} onInput=${set("model")} placeholder="model id" data-testid="pg-model-input" />`}
      </label>
      ${models.error && html`<div class="alert alert-error small" data-testid="pg-models-error">${models.error.message}</div>`}
      <label>
        <span class="label-row">Temperature <span class="mono">${decimal(Number(settings.temperature))}</span></span>
        <input type="range" min="0" max="2" step="0.1" value=${settings.temperature} onInput=${set("temperature")}
          data-testid="pg-temperature" />
      </label>
      <label>
        Max tokens
        <input type="number" min="1" max="32768" value=${settings.maxTokens} onInput=${set("maxTokens")}
          data-testid="pg-max-tokens" />
      </label>
      <label>
        System prompt
        <textarea rows="4" value=${settings.system} onInput=${set("system")} placeholder="You are a helpful assistant."
          data-testid="pg-system"></textarea>
      </label>
    </div>
  `;
}

function RunStats({ run }) {
  useTick(run.phase === "streaming" ? 250 : 60000); // keeps tokens/s moving while streaming
  if (!run.startedAt) return null;
  const end = run.endedAt || performance.now();
  const ttft = run.firstTokenAt ? run.firstTokenAt - run.startedAt : null;
  const tokens = run.usage?.completion_tokens ?? run.chunks;
  const decodeSeconds = run.firstTokenAt ? (end - run.firstTokenAt) / 1000 : 0;
  const rate = decodeSeconds > 0 ? tokens / decodeSeconds : null;
  const busy = run.phase === "queued" || run.phase === "streaming";
  const label = {
    queued: `Queued${run.queuePosition ? ` (position ${run.queuePosition})` : ""}…`,
    streaming: "Streaming…",
    done: `Done${run.finishReason ? ` · ${run.finishReason}` : ""}`,
    stopped: "Stopped",
    error: "Failed",
  }[run.phase];
  return html`
    <div class="run-stats" data-testid="pg-stats">
      <span class=${`run-phase run-${run.phase}`} data-testid="pg-status">${label}</span>
      <span>TTFT <strong data-testid="pg-ttft">${ttft === null ? "–" : duration(ttft)}</strong></span>
      <span><strong data-testid="pg-tps">${rate === null ? "–" : decimal(rate)}</strong> tokens/s</span>
      <span data-testid="pg-usage">
        ${run.usage
          ? html`<strong>${integer(run.usage.prompt_tokens)}</strong> prompt +${" "}
              <strong>${integer(run.usage.completion_tokens)}</strong> completion =${" "}
              <strong>${integer(run.usage.total_tokens)}</strong> tokens`
          : html`<span class="muted">${busy ? "usage when done" : "no usage reported"}</span>`}
      </span>
    </div>
  `;
}

function Transcript({ messages, live }) {
  const box = useRef(null);
  // Follow the answer as it grows, inside the transcript only (never scroll the whole page).
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [messages.length, live?.content]);
  const all = live ? [...messages, live] : messages;
  if (all.length === 0) {
    return html`<${Empty} title="Say something" testid="pg-empty">The answer streams here as the model writes it.<//>`;
  }
  return html`
    <div class="transcript" ref=${box} data-testid="pg-transcript">
      ${all.map(
        (m, i) => html`
          <div class=${`message message-${m.role}`} key=${i} data-testid=${`pg-message-${m.role}`}>
            <div class="message-role">${m.role === "user" ? "You" : "Assistant"}</div>
            <div class="message-text" data-testid=${m === live ? "pg-output" : undefined}>
              ${m.content}${m === live && html`<span class="caret"></span>`}
            </div>
            ${m.note && html`<div class="message-note">${m.note}</div>`}
          </div>
        `,
      )}
    </div>
  `;
}

/**
 * The conversation and the answer being streamed: {messages, live, run, error, busy, send, stop,
 * clear}. `run` holds the timings: startedAt, firstTokenAt, endedAt (performance.now() ms).
 */
function useChat() {
  const [messages, setMessages] = useState([]);
  const [live, setLive] = useState(null); // the assistant message being streamed
  const [run, setRun] = useState({ phase: "idle" });
  const [error, setError] = useState(null);
  const controller = useRef(null);
  useEffect(() => () => controller.current?.abort(), []); // leaving the page stops the stream
  const busy = run.phase === "queued" || run.phase === "streaming";

  async function send(apiKey, request, prompt) {
    const history = [...messages, { role: "user", content: prompt }];
    const state = { phase: "queued", startedAt: performance.now(), chunks: 0, usage: null };
    const publish = (patch) => setRun({ ...Object.assign(state, patch) });
    let content = "";
    controller.current = new AbortController();
    setMessages(history);
    setError(null);
    setLive({ role: "assistant", content });
    publish({});
    try {
      await streamChat({
        apiKey,
        request: { ...request, messages: [...request.messages, ...history] },
        signal: controller.current.signal,
        onQueued: (position) => publish({ queuePosition: position }),
        onDelta: (text) => {
          content += text;
          setLive({ role: "assistant", content });
          const firstTokenAt = state.firstTokenAt ?? performance.now();
          publish({ phase: "streaming", chunks: state.chunks + 1, firstTokenAt });
        },
        onUsage: (usage) => publish({ usage }),
        onFinish: (reason) => publish({ finishReason: reason }),
      });
      publish({ phase: "done", endedAt: performance.now() });
      setMessages([...history, { role: "assistant", content }]);
    } catch (err) {
      const stopped = err.name === "AbortError";
      publish({ phase: stopped ? "stopped" : "error", endedAt: performance.now() });
      if (!stopped) setError(err);
      if (content) setMessages([...history, { role: "assistant", content, note: stopped ? "stopped" : "failed" }]);
    } finally {
      setLive(null);
      controller.current = null;
    }
  }

  return {
    messages,
    live,
    run,
    error,
    busy,
    send,
    stop: () => controller.current?.abort(), // the gateway sees the disconnect and cancels the task
    clear: () => setMessages([]),
  };
}

function ChatError({ error }) {
  if (!error) return null;
  const title = error.status === 401 ? "Key refused" : error.status ? `Error ${error.status}` : "Error";
  return html`
    <div class="alert alert-error" role="alert" data-testid="pg-error">
      <strong>${title}</strong><span>${error.message}</span>
    </div>
  `;
}

export function PlaygroundPage({ params }) {
  const pick = useKeyChoice(params.get("key"));
  const models = useModels(pick.secret);
  const [settings, setSettings] = useState({ model: "", temperature: "0.7", maxTokens: "256", system: "" });
  const [prompt, setPrompt] = useState("");
  const chat = useChat();

  useEffect(() => {
    if (models.models.length && !models.models.includes(settings.model)) {
      setSettings((s) => ({ ...s, model: models.models[0] }));
    }
  }, [models.models]);

  const ready = prompt.trim() && pick.secret && settings.model;

  function send(event) {
    event.preventDefault();
    if (chat.busy || !ready) return;
    const system = settings.system.trim();
    chat.send(
      pick.secret,
      {
        model: settings.model,
        messages: system ? [{ role: "system", content: system }] : [],
        temperature: Number(settings.temperature),
        max_tokens: Number(settings.maxTokens),
      },
      prompt.trim(),
    );
    setPrompt("");
  }

  function onKeyDown(e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e);
  }

  return html`
    <${PageHeader} title="Playground" subtitle="Chat with a model through the OpenAI-compatible API." />
    <div class="playground">
      <${Card} title="Settings" class="pg-settings">
        <${Settings} pick=${pick} models=${models} settings=${settings} setSettings=${setSettings} />
      <//>
      <${Card}
        title="Chat"
        class="pg-chat"
        actions=${html`<button class="button button-ghost button-small" onClick=${chat.clear}
          disabled=${chat.busy || chat.messages.length === 0} data-testid="pg-clear">Clear</button>`}
      >
        <${Transcript} messages=${chat.messages} live=${chat.live} />
        <${ChatError} error=${chat.error} />
        <${RunStats} run=${chat.run} />
        <form class="composer" onSubmit=${send}>
          <textarea rows="3" value=${prompt} onInput=${(e) => setPrompt(e.currentTarget.value)} onKeyDown=${onKeyDown}
            placeholder=${pick.secret ? "Ask something… (Ctrl+Enter to send)" : "Choose or paste an API key first"}
            data-testid="pg-prompt"></textarea>
          <div class="composer-actions">
            ${chat.busy
              ? html`<button type="button" class="button button-danger" onClick=${chat.stop} data-testid="pg-stop">
                  Stop
                </button>`
              : html`<button type="submit" class="button button-primary" data-testid="pg-send" disabled=${!ready}>
                  Send
                </button>`}
          </div>
        </form>
      <//>
    </div>
  `;
}
