"""Reply parsing: the first python and the first yaml block, like the original formatter."""

from dream_graph.extract import extract_python, extract_yaml


def test_first_python_and_yaml_blocks():
    text = "intro\n```python\na = 1\n```\nmid\n```py\nb = 2\n```\n```yaml\nk: v\n```\n```yml\nz: 1\n```"
    assert extract_python(text) == "a = 1\n"
    assert extract_yaml(text) == "k: v\n"


def test_missing_blocks_and_other_languages():
    assert extract_python("no code here") is None
    assert extract_python("```bash\nls\n```") is None
    assert extract_yaml("```python\nx = 1\n```") is None
    assert extract_python("") is None


def test_fence_with_info_string_and_indentation():
    text = "  ```python title=gen.py\n  x = 1\n  ```"
    assert extract_python(text) == "  x = 1\n"
