//! Integration tests of the Docker plugin against the real Docker engine (default socket), real
//! `git` repositories and a real state store. Each test labels what it makes with an instance
//! id of its own and removes all of it at the end.

mod build;
mod fixture;
mod hosts;
mod request;
mod run;
