int mystery(void);
