"""Every input file of every command is read here, and nowhere else (``docs/inputs.md``).

One module per kind of input, all in the base layer (they import only :mod:`bert_lrp.errors`
and the standard library):

* :mod:`~bert_lrp.data.source`: strict UTF-8 files and stdin, lines, :class:`DataError`;
* :mod:`~bert_lrp.data.lines`: plain text, one text per line; :class:`TextInput`;
* :mod:`~bert_lrp.data.tables`: ``.tsv`` / ``.csv`` / JSON-lines tables and the ONE rule of
  which file is a table and which column is which; :class:`Example`;
* :mod:`~bert_lrp.data.inputs`: the texts a command explains (files, stdin, arguments);
* :mod:`~bert_lrp.data.conll`: CoNLL-2003 style word/tag files;
* :mod:`~bert_lrp.data.records`: the explanation records ``explain --jsonl`` writes, checked
  field by field;
* :mod:`~bert_lrp.data.documents`: a run's own JSON files read back (``results.json``, JSON lines).
"""
from .conll import parse_conll, read_conll
from .documents import read_json, read_json_lines
from .inputs import parse_texts, read_file_inputs, read_inputs
from .lines import TextInput, text_lines
from .records import check_record, read_explanations
from .source import STDIN, DataError, decode_utf8, read_file, read_stdin, split_lines
from .tables import (KNOWN_COLUMNS, LABEL_COLUMN, PAIR_COLUMNS, TEXT_COLUMNS, Example, column_key, parse_table,
                     read_table, table_format)

__all__ = ["DataError", "Example", "KNOWN_COLUMNS", "LABEL_COLUMN", "PAIR_COLUMNS", "STDIN", "TEXT_COLUMNS",
           "TextInput", "check_record", "column_key", "decode_utf8", "parse_conll", "parse_table", "parse_texts",
           "read_conll", "read_explanations", "read_file", "read_file_inputs", "read_inputs", "read_json",
           "read_json_lines", "read_stdin", "read_table", "split_lines", "table_format", "text_lines"]
