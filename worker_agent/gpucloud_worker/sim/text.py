"""Deterministic text that reads like an answer, and the sim's token counting."""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence

from gpucloud_common.tokens import chat_tokens, tool_call_text, tools_text
from gpucloud_worker.backend import Message, Tool

# A natural answer (no max_tokens) has this many sentences, in paragraphs of up to
# PARAGRAPH_SENTENCES sentences. Each output word (with its punctuation) is a token,
# and so is each paragraph break.
ANSWER_SENTENCES = (3, 8)
PARAGRAPH_SENTENCES = 3
PARAGRAPH_BREAK = "\n\n"

# Source of an order-2 word Markov chain: shared words let it splice sentences.
# One sentence per line; only a sentence's last word ends with one of _SENTENCE_ENDS.
_CORPUS = """
The short answer is that it depends on what you want to achieve.
In most cases the simplest approach is also the one that works best.
It is worth starting with a small example and checking the result before you scale up.
A good first step is to write down what you expect to happen.
The main trade-off is between speed and accuracy, and the right balance depends on the task.
If the data is small, a simple method is usually fast enough.
If the data is large, it is worth measuring before you change anything.
Most problems become easier once you break them into smaller parts.
Each part can then be tested on its own, which makes mistakes easier to find.
A common mistake is to optimise too early, before the real bottleneck is known.
The best way to learn is to try a few options and compare the results.
In practice the difference between the options is often smaller than it looks.
It also helps to keep notes, so that you can explain the result to someone else.
For a quick overview, the key points are the goal, the constraints and the cost.
The goal tells you what to measure, and the constraints tell you what to avoid.
The cost is not only money but also time and the effort of keeping things running.
When in doubt, choose the option that is easier to change later.
A clear plan saves time, because it tells you what to do next.
Good tools help, but they are no substitute for understanding the problem.
Once the basics work, you can improve the details step by step.
This approach is slower at first but much faster in the long run.
Another option is to ask someone who has solved a similar problem before.
Their experience can show you which parts are hard and which are easy.
Finally, remember that a working solution is better than a perfect plan.
You can always come back and refine it when you know more.
Here is a simple way to think about it.
Imagine you are explaining the idea to a friend who has never heard of it.
If the explanation is short and clear, the idea is probably sound.
If it needs many exceptions, the idea may need more work.
That is why testing early and often is such a useful habit.
"""


_SENTENCE_ENDS = (".", "!", "?")


def message_text(message: Message) -> str:
    """A message's text as the core's estimate counts it: content, refusal, then its tool
    calls (servicers.admission.message_texts)."""
    calls = "".join(tool_call_text(call.name, call.arguments) for call in message.tool_calls)
    return message.content + message.refusal + calls


def tools_message(tools: Sequence[Tool]) -> str:
    """The tool definitions as the text of one more message ("" without tools)."""
    return tools_text((tool.name, tool.description, tool.parameters) for tool in tools)


def count_prompt_tokens(messages: Iterable[Message], tools: Sequence[Tool] = ()) -> int:
    """The sim's prompt token count, the core's estimate (gpucloud_common.tokens)."""
    texts = [message_text(message) for message in messages]
    return chat_tokens([tools_message(tools), *texts] if tools else texts)


def text_seed(*parts: object) -> int:
    """A stable 64-bit seed from the parts (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _build_chain() -> dict[tuple[str, str], tuple[str, ...]]:
    """State (two previous words, "" before a sentence) -> the words seen after it."""
    chain: dict[tuple[str, str], list[str]] = {}
    for line in _CORPUS.strip().splitlines():
        words = ["", "", *line.split()]
        for first, second, after in zip(words, words[1:], words[2:], strict=False):
            chain.setdefault((first, second), []).append(after)
    return {state: tuple(successors) for state, successors in chain.items()}


_CHAIN = _build_chain()


# The corpus's words, bare and lower-case: the alternatives logprobs name.
VOCABULARY: tuple[str, ...] = tuple(sorted({w.strip(".,!?").lower() for w in _CORPUS.split()}))
# Cap on a penalty's exponent, so a negative penalty on a long answer cannot overflow.
_MAX_BOOST = 50.0


class TextStream:
    """An endless, seeded stream of tokens; `answer_ended` marks a natural answer's end.

    A presence or frequency penalty weighs each candidate word down by
    exp(-(presence * seen + frequency * count)) over the words said so far, as an
    OpenAI-style penalty lowers a logit; without penalties the draw is uniform over
    the corpus's successors. A stream that `continues` a text (a completion's
    prompt) starts with a space.
    """

    def __init__(
        self,
        seed: int,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        *,
        continues: bool = False,
    ) -> None:
        self._rng = random.Random(seed)
        self._presence, self._frequency = presence_penalty, frequency_penalty
        self._said: Counter[str] = Counter()
        self._answer_sentences = self._rng.randint(*ANSWER_SENTENCES)
        self._sentences = 0
        self._state = ("", "")
        self._line_start = not continues
        self._pending_break = False
        self.answer_ended = False

    def next_token(self) -> str:
        """The next token; answer_ended is set once the natural answer's last word is out."""
        if self._pending_break:
            self._pending_break = False
            self._line_start = True
            return PARAGRAPH_BREAK
        word = self._next_word(_CHAIN[self._state])
        self._state = (self._state[1], word)
        token = word if self._line_start else f" {word}"
        self._line_start = False
        if word.endswith(_SENTENCE_ENDS):
            self._end_sentence()
        return token

    def _next_word(self, candidates: tuple[str, ...]) -> str:
        if not (self._presence or self._frequency):
            return self._rng.choice(candidates)
        weights = [
            math.exp(min(_MAX_BOOST, -self._presence * (n > 0) - self._frequency * n))
            for n in (self._said[w] for w in candidates)
        ]
        word = self._rng.choices(candidates, weights)[0]
        self._said[word] += 1
        return word

    def _end_sentence(self) -> None:
        self._state = ("", "")
        self._sentences += 1
        if self._sentences == self._answer_sentences:
            self.answer_ended = True
        self._pending_break = self._sentences % PARAGRAPH_SENTENCES == 0
