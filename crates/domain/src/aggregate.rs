//! The aggregate pattern: a command is decided against the current state and yields
//! events; applying an event is pure and cannot fail.

use crate::DomainError;

pub trait Aggregate: Default {
    type Command;
    type Event;
    /// What the decision may consult besides the aggregate's own state (the tree, the date).
    type Context<'a>;

    /// Decides a command: the events to record, or why not. Never mutates.
    fn handle(&self, command: Self::Command, ctx: Self::Context<'_>) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds one recorded event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The state after `events`, from empty.
    fn replay<'e>(events: impl IntoIterator<Item = &'e Self::Event>) -> Self
    where
        Self::Event: 'e,
    {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }
}
