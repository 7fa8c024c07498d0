//! SeaORM entities: table shapes only, no logic.

pub mod session;
