//! Text ⇄ resources: YAML and JSON, multi-document files, `kind: List` and `kind: <Kind>List`.
