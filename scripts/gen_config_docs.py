"""Writes docs/configuration.md, the config reference, from configs/base.py.

    python scripts/gen_config_docs.py           # (re)write docs/configuration.md
    python scripts/gen_config_docs.py --check   # exit 1 if the committed file is out of date

The source of truth is configs/base.py: the defaults come from its get_config(), the meaning of
each field from the comment beside its assignment (`config.model.name = 'cnn'  # ...`) and/or
the block of `#` lines directly above it. Blocks (model, data, train, ...) appear in the order
base.py creates them, fields in the order it sets them. Every field get_config() returns must be
assigned in base.py with a comment: a field without one stops the script (exit 1) naming it.

Needs only ml_collections (no jax), so it is quick to run in tests.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import io
import os
import sys
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, 'configs', 'base.py')
OUT = os.path.join(ROOT, 'docs', 'configuration.md')
COMMAND = 'python scripts/gen_config_docs.py'


class DocError(Exception):
  """base.py cannot be documented as it stands (a field without a comment, ...)."""


@dataclasses.dataclass
class Field:
  path: str  # 'model.name'
  default: str  # markdown-ready text of the default
  meaning: str


@dataclasses.dataclass
class Block:
  name: str  # 'model'; '' for fields set directly on the top-level config
  intro: str = ''
  fields: list[Field] = dataclasses.field(default_factory=list)


def _comments(source: str) -> tuple[dict[int, str], dict[int, str]]:
  """(full-line comments, comments after code) of `source`, by 1-based line number."""
  lines = source.splitlines()
  full, inline = {}, {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type != tokenize.COMMENT:
      continue
    row, col = token.start
    text = token.string.lstrip('#').strip()
    if lines[row - 1][:col].strip():
      inline[row] = text
    else:
      full[row] = text
  return full, inline


def _dotted(node: ast.AST) -> list[str] | None:
  """['config', 'model', 'name'] for `config.model.name`; None for anything else."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    return [node.id] + parts[::-1]
  return None


def _is_config_dict(node: ast.AST) -> bool:
  """`ml_collections.ConfigDict()` / `ConfigDict()` / `config_dict.ConfigDict()`."""
  return (isinstance(node, ast.Call) and
          (_dotted(node.func) or [''])[-1] == 'ConfigDict')


def _join(texts: list[str]) -> str:
  return ' '.join(t for t in texts if t).strip()


def _leading(full: dict[int, str], line: int) -> str:
  """The block of full-line comments that ends on the line just above `line`."""
  texts = []
  row = line - 1
  while row in full:
    texts.append(full[row])
    row -= 1
  return _join(texts[::-1])


def _get_config_function(tree: ast.Module, path: str) -> ast.FunctionDef:
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == 'get_config':
      return node
  raise DocError(f'{path} has no get_config() function')


def _config_name(function: ast.FunctionDef) -> str:
  for node in ast.walk(function):
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Name):
      return node.value.id
  return 'config'


def _load_defaults(path: str):
  spec = importlib.util.spec_from_file_location('_lbtrain_base_config_for_docs', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(), module.__doc__ or ''


def _flatten(config, prefix: str = '') -> dict[str, object]:
  """Leaf fields of a ConfigDict as {'model.name': value}, in insertion order."""
  out = {}
  for key in config.keys():
    value = config[key]
    if hasattr(value, 'keys') and hasattr(value, 'lock'):  # a nested ConfigDict
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _escape(text: str) -> str:
  """Safe inside a markdown table cell (GitHub renders `\\|` as `|`, in code spans too)."""
  return text.replace('|', '\\|').replace('\n', ' ')


def _default_text(value: object, source: str | None) -> str:
  """The default as written in base.py when that literal is the value, else its repr."""
  text = repr(value)
  if source is not None:
    try:
      if ast.literal_eval(source) == value and type(ast.literal_eval(source)) is type(value):
        text = source
    except (ValueError, SyntaxError, TypeError):
      pass
  return f'`{_escape(text)}`'


def collect(path: str = BASE) -> tuple[str, list[Block]]:
  """(base.py's docstring, its blocks with their fields) or DocError naming what is missing."""
  with open(path, encoding='utf-8') as f:
    source = f.read()
  tree = ast.parse(source, filename=path)
  function = _get_config_function(tree, path)
  root = _config_name(function)
  full, inline = _comments(source)
  config, doc = _load_defaults(path)
  values = _flatten(config)

  assigns = sorted(
      (node for node in ast.walk(function) if isinstance(node, ast.Assign)),
      key=lambda node: node.lineno)
  blocks: dict[str, Block] = {}
  seen: dict[str, tuple[str, str | None]] = {}  # field -> (meaning, source of the value)
  for node in assigns:
    for target in node.targets:
      parts = _dotted(target)
      if not parts or parts[0] != root or len(parts) < 2:
        continue
      name = '.'.join(parts[1:])
      comment = _join([_leading(full, node.lineno)] +
                      [inline.get(row, '') for row in range(node.lineno, node.end_lineno + 1)])
      if _is_config_dict(node.value):
        block = blocks.setdefault(name, Block(name))
        block.intro = block.intro or comment
        continue
      if name in seen:  # set again further down: keep the first comment found
        if not seen[name][0]:
          seen[name] = (comment, seen[name][1])
        continue
      value_source = ast.get_source_segment(source, node.value)
      seen[name] = (comment, value_source)
      block_name = name.split('.')[0] if '.' in name else ''
      blocks.setdefault(block_name, Block(block_name))

  not_assigned = [name for name in values if name not in seen]
  if not_assigned:
    raise DocError(f'{os.path.relpath(path)}: get_config() returns fields not assigned as '
                   f'`{root}.a.b = ...` in its source: {", ".join(not_assigned)}')
  ordered = [name for name in seen if name in values]  # source order (ConfigDict sorts keys)
  uncommented = [name for name in ordered if not seen[name][0]]
  if uncommented:
    raise DocError(f'{os.path.relpath(path)} has no comment (above or beside the assignment) for '
                   f'{len(uncommented)} field(s): {", ".join(uncommented)}')

  for name in ordered:
    value, (meaning, value_source) = values[name], seen[name]
    block_name = name.split('.')[0] if '.' in name else ''
    blocks[block_name].fields.append(
        Field(name, _default_text(value, value_source), _escape(meaning)))
  return doc, [block for block in blocks.values() if block.fields]


def render(path: str = BASE) -> str:
  """The text of docs/configuration.md."""
  doc, blocks = collect(path)
  out = [
      '<!-- Generated from configs/base.py by scripts/gen_config_docs.py: do not edit by hand;',
      f'     change the comments in configs/base.py and run `{COMMAND}`. -->',
      '',
      '# Configuration reference',
      '',
  ]
  if doc.strip():
    out += [doc.strip(), '']
  out += [
      'Below, each block\'s fields in the order `configs/base.py` sets them, with their default',
      'and the comment beside or above them there. A config file is a `get_config()` that starts',
      'from `base.get_config()` and changes what its recipe needs; any field can also be set on',
      'the command line (`--config.optimizer.base_lr=0.2`). The config is locked, so a typo in a',
      'field name is an error, not a silently new field. A default of `None` marks an optional',
      'field: it is unset until a config or `--config.a.b=value` sets it.',
      '',
      'Blocks: ' + ', '.join(f'[`{b.name or "top level"}`](#{b.name or "top-level"})'
                             for b in blocks) + '.',
      '',
  ]
  for block in blocks:
    out += [f'## {block.name or "top level"}', '']
    if block.intro:
      out += [block.intro, '']
    out += ['| field | default | meaning |', '|---|---|---|']
    out += [f'| `{f.path}` | {f.default} | {f.meaning} |' for f in block.fields]
    out.append('')
  return '\n'.join(out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true',
                      help='exit 1 if the output file differs from what base.py gives')
  parser.add_argument('--base', default=BASE, help='the base config file (default %(default)s)')
  parser.add_argument('--out', default=OUT, help='the file to write (default %(default)s)')
  args = parser.parse_args(argv)
  try:
    text = render(args.base)
  except DocError as error:
    print(f'gen_config_docs: error: {error}', file=sys.stderr)
    return 1
  out = os.path.relpath(args.out)
  if args.check:
    try:
      with open(args.out, encoding='utf-8') as f:
        current = f.read()
    except FileNotFoundError:
      current = None
    if current != text:
      state = 'is missing' if current is None else 'differs from configs/base.py'
      print(f'gen_config_docs: {out} {state}; run {COMMAND}', file=sys.stderr)
      return 1
    return 0
  with open(args.out, 'w', encoding='utf-8') as f:
    f.write(text)
  print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
