"""An offline Bitrix24 portal: limits, envelopes, batch semantics and failures included."""
