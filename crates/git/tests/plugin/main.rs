//! Integration tests of the Git plugin against real `git` repositories and a real state store.

mod command;
mod fetch;
mod fixture;
mod repo;
