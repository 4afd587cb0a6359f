/** Rows per read of a job's outputs (10,000 in one read held the event loop 13–34 ms). Both engines' hot stores page by it. */
export const OUTPUT_PAGE = 256;
