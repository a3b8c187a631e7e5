#!/usr/bin/env python3
"""The seams of servers/, as its READMEs state them: no engine and no model names a
protocol (outside comments), a protocol includes nothing but itself and its parser, and
each folder includes only what its README allows. Standard library only."""
import re
import sys
import unittest
from pathlib import Path

SERVERS = Path(__file__).resolve().parents[2] / "servers"
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (SERVERS / folder).iterdir() if p.suffix in (".cpp", ".hpp"))


def code_lines(path: Path):
    """(number, line) of every line with its // comment cut off."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//", 1)[0]
        if code.strip():
            yield number, code


def project_includes(path: Path) -> list[str]:
    found = []
    for _, line in code_lines(path):
        match = INCLUDE.match(line)
        if match and match.group(1) == '"':
            found.append(match.group(2))
    return found


class ServersLayout(unittest.TestCase):
    def test_engines_and_models_name_no_protocol(self):
        for folder in ("io", "models"):
            for path in sources(folder):
                for number, code in code_lines(path):
                    self.assertIsNone(re.search(r"http|Http|\bws\b|\bWs|[Ww]eb[Ss]ocket", code),
                                      f"{path.relative_to(SERVERS)}:{number}: {code.strip()}")

    def test_a_protocol_includes_only_protocols(self):
        for path in sources("protocol"):
            for _, line in code_lines(path):
                match = INCLUDE.match(line)
                if match and match.group(1) == '"':
                    # common/ holds what echo-server shares with loadgen, no I/O either.
                    self.assertTrue(match.group(2).startswith(("servers/protocol/", "common/")),
                                    f"{path.name} includes {match.group(2)}")

    def test_each_folder_includes_what_its_readme_allows(self):
        forbidden = {
            "io": ("servers/models/", "servers/cli/", "servers/protocol/echo",
                   "servers/protocol/http", "servers/protocol/ws"),
            "models": ("servers/models/", "servers/cli/", "servers/protocol/"),
            "cli": ("servers/io/", "servers/models/"),
        }
        for folder, prefixes in forbidden.items():
            for path in sources(folder):
                for include in project_includes(path):
                    self.assertFalse(include.startswith(prefixes),
                                     f"{folder}/{path.name} includes {include}")


if __name__ == "__main__":
    sys.exit(unittest.main())
