"""The docs stay true to the code: the generated config reference, and the README's limits."""

import importlib.util
import os
import re
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
TEST_COMMAND = 'bash scripts/setup.sh && .venv/bin/python -m pytest -q -n 2'


def _generator():
  path = os.path.join(ROOT, 'scripts', 'gen_config_docs.py')
  spec = importlib.util.spec_from_file_location('gen_config_docs', path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


gen = _generator()


def test_configuration_doc_matches_base_config():
  try:
    expected = gen.render()
  except gen.DocError as error:
    pytest.fail(f'{error}; then run python scripts/gen_config_docs.py')
  with open(gen.OUT, encoding='utf-8') as f:
    committed = f.read()
  assert committed == expected, (
      'docs/configuration.md is out of date with configs/base.py: '
      'run python scripts/gen_config_docs.py')


def test_check_mode_exit_codes(tmp_path, capsys):
  base = tmp_path / 'base.py'
  out = tmp_path / 'configuration.md'
  base.write_text(_BASE)
  assert gen.main(['--base', str(base), '--out', str(out), '--check']) == 1
  assert 'run python scripts/gen_config_docs.py' in capsys.readouterr().err
  assert gen.main(['--base', str(base), '--out', str(out)]) == 0
  assert gen.main(['--base', str(base), '--out', str(out), '--check']) == 0
  base.write_text(_BASE.replace('  return config', '  config.eval.every_steps = 7  # new\n'
                                '  return config'))
  assert gen.main(['--base', str(base), '--out', str(out), '--check']) == 1
  assert 'differs' in capsys.readouterr().err


_BASE = textwrap.dedent('''\
    """Doc of the base config."""
    import ml_collections
    from ml_collections import config_dict


    def get_config():
      config = ml_collections.ConfigDict()
      config.model = ml_collections.ConfigDict()
      config.model.name = 'cnn'  # cnn | resnet20
      # Added to the
      # variance.
      config.model.bn_epsilon = 1e-5
      config.model.group = config_dict.placeholder(int)  # None = whole batch

      # Evaluation.
      config.eval = ml_collections.ConfigDict()
      config.eval.every_epochs = 1.0  # interval
      return config
    ''')


def test_tables_follow_the_source(tmp_path):
  base = tmp_path / 'base.py'
  base.write_text(_BASE)
  text = gen.render(str(base))
  assert 'Doc of the base config.' in text
  assert '| `model.name` | `\'cnn\'` | cnn \\| resnet20 |' in text
  assert '| `model.bn_epsilon` | `1e-5` | Added to the variance. |' in text
  assert '| `model.group` | `None` | None = whole batch |' in text
  assert text.index('## model') < text.index('## eval') < text.index('Evaluation.')
  assert '| `eval.every_epochs` | `1.0` | interval |' in text


def test_a_field_without_comment_is_named(tmp_path):
  base = tmp_path / 'base.py'
  base.write_text(_BASE.replace('  return config', '  config.eval.keep = 3\n  return config'))
  with pytest.raises(gen.DocError, match=r'no comment .* eval\.keep'):
    gen.render(str(base))


def test_readme_is_short_and_keeps_the_ci_command():
  size = os.path.getsize(README)
  assert size <= 12 * 1024, f'README.md is {size} bytes; keep it <= 12 KiB, details go in docs/'
  with open(README, encoding='utf-8') as f:
    text = f.read()
  assert TEST_COMMAND in text
  with open(os.path.join(ROOT, '.ci', 'run'), encoding='utf-8') as f:
    assert TEST_COMMAND in f.read()  # CI runs the README's command
  assert '.venv/bin/python -m pytest -q -n 2 -m "not slow"' in text  # the quick subset


def test_readme_links_to_existing_docs():
  with open(README, encoding='utf-8') as f:
    text = f.read()
  links = re.findall(r'\]\((docs/[^)#]+)', text)
  assert links, 'README.md should link its details in docs/'
  missing = [link for link in links if not os.path.exists(os.path.join(ROOT, link))]
  assert not missing, f'README.md links to missing files: {missing}'
