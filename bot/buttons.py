"""Restart-proof buttons: the custom id carries what a press acts on, so a button works after a restart."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

import discord


class RestartProofButton(discord.ui.DynamicItem[discord.ui.Button], template=r"(?!)"):
    """A ``DynamicItem`` button. A subclass gives its ``template=`` (named groups), builds its custom id,
    turns the groups back into its constructor's arguments in ``from_match`` and handles ``callback``."""

    def __init__(
        self,
        custom_id: str,
        label: str,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        *,
        disabled: bool = False,
    ) -> None:
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id, disabled=disabled))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls.from_match(match)

    @classmethod
    def from_match(cls, match: re.Match[str]) -> Self:
        raise NotImplementedError(f"{cls.__name__} must say how its custom id becomes a button")


# One answer of a two-answer question: (word in the custom id, label, style).
Answer = tuple[str, str, discord.ButtonStyle]


class TwoChoiceButton(RestartProofButton, template=r"(?!)"):
    """One of the two answers (yes/no, confirm/cancel) to a question about one subject: a case, a guild, a member.

    A subclass names its ``prefix`` and its ``yes`` and ``no`` answers as class arguments; the custom id is
    ``{prefix}:{answer}:{subject_id}`` and the template is derived from the same words, so a button already
    sent keeps working after a restart.
    """

    prefix: ClassVar[str]
    answers: ClassVar[tuple[Answer, Answer]]

    def __init_subclass__(cls, *, prefix: str, yes: Answer, no: Answer, **kwargs: Any) -> None:
        cls.prefix = prefix
        cls.answers = (yes, no)
        template = (
            rf"{re.escape(prefix)}:(?P<answer>{re.escape(yes[0])}|{re.escape(no[0])}):(?P<subject_id>[0-9]+)"
        )
        super().__init_subclass__(template=template, **kwargs)

    def __init__(self, yes: bool, subject_id: int) -> None:
        answer, label, style = self.answers[0 if yes else 1]
        super().__init__(f"{self.prefix}:{answer}:{subject_id}", label, style)
        self.yes = yes
        self.subject_id = subject_id

    @classmethod
    def from_match(cls, match: re.Match[str]) -> Self:
        return cls(match["answer"] == cls.answers[0][0], int(match["subject_id"]))

    @classmethod
    def view(cls, subject_id: int) -> discord.ui.View:
        """Both answers, "yes" first, in a view that never times out (the buttons outlive it)."""
        view = discord.ui.View(timeout=None)
        view.add_item(cls(True, subject_id))
        view.add_item(cls(False, subject_id))
        return view
