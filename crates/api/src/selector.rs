//! Calico's label selector language: parser, evaluator, canonical printer.
