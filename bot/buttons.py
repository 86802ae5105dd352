"""Restart-proof buttons: the custom id carries what a press acts on, so a button works after a restart."""

from __future__ import annotations

import re
from typing import Any, Self

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
