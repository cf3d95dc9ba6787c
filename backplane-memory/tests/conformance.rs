//! The conformance suite over the in-memory transport: one test per
//! scenario, without a size limit and with one.

mod unlimited {
    use backplane_memory::MemoryBackplane;

    conformance::suite!({
        let bus = MemoryBackplane::new();
        conformance::factory_fn(move || {
            let bus = bus.clone();
            async move { Ok(bus) }
        })
    });
}

/// With a maximum message size, as a networked transport has: envelopes
/// up to it arrive, one byte more is refused.
mod limited {
    use backplane_memory::MemoryBackplane;
    use conformance::Capabilities;

    const MAX_MESSAGE_SIZE: usize = 8000;

    conformance::suite!({
        let bus = MemoryBackplane::new().with_max_message_size(MAX_MESSAGE_SIZE);
        conformance::factory_fn(move || {
            let bus = bus.clone();
            async move { Ok(bus) }
        })
        .capabilities(
            Capabilities::new()
                .max_message_size(MAX_MESSAGE_SIZE)
                .size_boundary(1000),
        )
    });
}
