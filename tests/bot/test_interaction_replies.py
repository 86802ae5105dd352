"""The declarations that steer the auto-defer: public answers, and commands or buttons that open a form."""

from __future__ import annotations

import re

import discord
import pytest
from discord import app_commands

from bot import interaction_replies as replies


async def _callback(interaction: discord.Interaction) -> None:
    """A command body; never run here."""


def test_command_declared_public_is_marked_in_its_extras():
    command = replies.answers_publicly(app_commands.command(name="announce", description="d")(_callback))
    assert command.extras[replies.EXTRAS_KEY] == replies.PUBLIC


def test_command_declared_to_open_a_form_is_never_auto_deferred():
    command = replies.opens_modal(app_commands.command(name="form", description="d")(_callback))
    assert command.extras[replies.EXTRAS_KEY] == replies.NEVER


def test_declaration_below_the_command_decorator_is_refused_clearly():
    with pytest.raises(TypeError, match=r"above @app_commands\.command"):
        replies.answers_publicly(_callback)


def test_button_declared_to_open_a_form_is_recognised_by_its_custom_id():
    @replies.opens_modal
    class FormButton(discord.ui.DynamicItem[discord.ui.Button], template=r"test:form-button:(?P<n>[0-9]+)"):
        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
        ) -> FormButton:
            raise NotImplementedError

    assert replies.component_opens_modal("test:form-button:12")
    assert not replies.component_opens_modal("test:form-button:x")
    assert not replies.component_opens_modal("test:other:12")
