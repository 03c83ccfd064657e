"""What a login node asks after the key: one-time passwords and the like.

Many centres accept a key only together with a one-time password, asked
through SSH's keyboard-interactive method once the key is accepted. paramiko
answers those prompts on the terminal with ``input()``, which shows the
code, blocks a notebook and hangs a batch job. Here the answers come from a
callable the user gives (`SSHRunner`'s ``answer_prompts``), by default one
that asks on the terminal without echo, and that refuses at once, saying
why, where there is no terminal to ask on. The prompts come once per
connection: a session keeps its connection, and only a reconnect asks again.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence

import paramiko

logger = logging.getLogger(__name__)

#: ``answer(title, instructions, prompts)`` → one answer per prompt; each
#: prompt is ``(text, echo)``, echo saying whether the answer may be shown.
PromptAnswerer = Callable[[str, str, Sequence[tuple[str, bool]]], Sequence[str]]


class PromptsUnanswered(paramiko.AuthenticationException):
    """The login node asked for more than the key, and no answer could be given."""


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        return False
    return True


def ask_on_terminal(host: str) -> PromptAnswerer:
    """Ask on the terminal, hidden unless the server says the answer may be
    shown. getpass as replaced by a notebook kernel asks in the notebook."""

    def answer(title: str, instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
        if not prompts:
            return []
        if getpass.getpass is getpass.unix_getpass and not _has_terminal():  # type: ignore[attr-defined]  # unix_getpass exists on POSIX, the only systems jqref runs on
            texts = ", ".join(repr(text.strip()) for text, _ in prompts)
            raise PromptsUnanswered(
                f"{host} asks {texts} after the key (a one-time password?), and there is no terminal to ask on: "
                "pass SSHRunner(..., answer_prompts=callable) with a callable that returns the answers"
            )
        for line in (title, instructions):
            if line.strip():
                print(line.strip(), file=sys.stderr)
        return [input(f"{host} {text}") if echo else getpass.getpass(f"{host} {text}") for text, echo in prompts]

    return answer


class PromptAnswers:
    """`answer` serving one connection's keyboard-interactive prompts. An
    error raised while answering cannot cross paramiko's transport thread:
    it is kept, the server gets empty answers (so the login fails as
    refused), and `raise_kept` raises it in the connecting thread instead."""

    def __init__(self, host: str, answer: PromptAnswerer):
        self.host = host
        self.answer = answer
        self.kept: BaseException | None = None

    def __call__(self, title: str, instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
        if prompts:
            logger.info("%s asks %d prompt(s) after the key", self.host, len(prompts))
        try:
            answers = [str(a) for a in self.answer(title, instructions, prompts)]
        except BaseException as e:  # kept for the connecting thread, which raises it
            self.kept = e
            return [""] * len(prompts)
        if len(answers) != len(prompts):
            self.kept = PromptsUnanswered(
                f"answer_prompts gave {len(answers)} answer(s) to {self.host}'s {len(prompts)} prompt(s)"
            )
            return [""] * len(prompts)
        return answers

    def answering(self, make_transport: Callable[..., paramiko.Transport]) -> Callable[..., paramiko.Transport]:
        """A transport factory for ``SSHClient.connect`` whose transports ask
        this object: paramiko's client asks through ``auth_interactive_dumb``
        when the server wants more than the key, which would ``input()``."""

        def make(sock, **kwargs) -> paramiko.Transport:
            transport = make_transport(sock, **kwargs)

            def auth_interactive_dumb(username, handler=None, submethods=""):
                return transport.auth_interactive(username, self, submethods)

            transport.auth_interactive_dumb = auth_interactive_dumb  # type: ignore[method-assign]  # per connection, by design
            return transport

        return make

    def raise_kept(self) -> None:
        if self.kept is not None:
            raise self.kept
