"""The toy models' word-level vocabulary, in token-id order: one fixed fact, so that a change
to the question wording or to the benchmarks' draw cannot renumber the tokens of a model
built afresh (`toy.build_tokenizer`).

It is the vocabulary that `tokenizers`' WordLevelTrainer drew from the ShapesWorld corpus
(testbed v1-v3), most frequent word first; `tests/testbed/test_shapes.py` checks that every
word a question, answer or prompt uses is in it.
"""

WORDS = (
    "<pad>", "<s>", "</s>", "<unk>", "<image>", ".", "the", "a", ";", "?", "answer",
    "image", "empty", "or", ":", "no", "yes", "is", "question", "please", "in", "circle",
    ",", "square", "there", "red", "triangle", "objects", "d", "c", "b", "cell", "diamond",
    "are", "object", "option", "large", ">", "small", "<", "'", "yellow", "s", "choices",
    "directly", "from", "given", "letter", "options", "with", "phrase", "single", "using",
    "word", "cross", "purple", "how", "many", "three", "four", "green", "blue", "zero",
    "corners", "what", "and", "context", "hot", "by", "describe", "have", "cyan", "color",
    "twelve", "one", "other", "two", "has", "five", "of", "every", "as", "same", "which",
    "size", "toy", "toys", "where", "does", "number", "do", "total", "shape", "left", "six",
    "cold", "right", "says", "row", "middle", "top", "4", "bottom", "equal", "plus", "to",
    "center", "if", "remain", "removed", "were", "would", "an", "0", "3", "12", "16", "8",
    "circles", "diamonds", "7", "squares", "11", "15", "above", "more", "than", "triangles",
    "crosses", "below", "%", "19", "']", "['", "20", "6", "10", "message", "18", "==",
    "endfor", "for", "text", "assistant", "content", "type", "user", "endif", "'<", "'</",
    "+", "1", "13", "14", "17", "2", "21", "22", "23", "24", "25", "26", "27", "28", "29",
    "5", "9", ":'", ">'", "add_generation_prompt", "eight", "else", "messages", "nine",
    "role", "seven",
)
