//! Training: the loop every engine shares ([`Trainer`]), its [`Observer`]s, optimisers over
//! [parameter groups](ParamGroup), learning-rate schedules and checkpoints.

mod checkpoint;
mod group;
pub mod observers;
mod optim;
mod schedule;
mod trainer;

pub use checkpoint::{load_checkpoint, save_checkpoint};
pub use group::ParamGroup;
pub use optim::{Adam, Optimizer, Sgd};
pub use schedule::{Constant, Cosine, ExponentialDecay, Schedule};
pub use trainer::{Control, Observer, StepInfo, TrainReport, Trainer};
