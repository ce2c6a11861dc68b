//! What every boundary crossing costs, side by side with the kernel floor.
