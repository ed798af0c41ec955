// Tokenizers and chat templates

// Dataset formats and JSONL

// Tokenizing with loss masks, collators and packing

// Synthetic verifiable tasks
