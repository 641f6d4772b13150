package main

func (h *harness) drain() error   { return nil }
func (h *harness) sdcard() error  { return nil }
func (h *harness) startup() error { return nil }
func (h *harness) fleet() error   { return nil }
func (h *harness) faults() error  { return nil }
